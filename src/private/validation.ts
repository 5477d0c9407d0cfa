import { Duration, Token } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import { FSX_TAG_PATTERN } from './shared-values';

/** Throws the library's one shape of synth-time error: the construct path, the prop, the rule, the value. */
export function invalid(scope: IConstruct, prop: string, rule: string, value?: unknown): never {
  const received = value === undefined ? '' : ` (received ${JSON.stringify(value)})`;
  throw new Error(`${scope.node.path}: invalid ${prop}: ${rule}${received}`);
}

/** Checks a string against a pattern, unless it is absent or an unresolved token. */
export function validatePattern(scope: IConstruct, prop: string, value: string | undefined, pattern: RegExp, rule: string): void {
  if (value === undefined || Token.isUnresolved(value)) return;
  if (!pattern.test(value)) invalid(scope, prop, rule, value);
}

export function validateMaxLength(scope: IConstruct, prop: string, value: string | undefined, max: number): void {
  if (value === undefined || Token.isUnresolved(value)) return;
  if (value.length > max) invalid(scope, prop, `must be at most ${max} characters long, not ${value.length}`);
}

/** The characters a service allows in tag keys and values, beyond the length rules. */
export interface TagCharacters {
  /** Matches a whole allowed key or value. */
  readonly pattern: RegExp;
  /** What the pattern allows, in words, for the error. */
  readonly description: string;
}

/**
 * FSx's tag characters (its API model's `TagKey`/`TagValue` pattern): letters, numbers, spaces
 * and `_ . : / = + - @`. EC2 allows any character, so the check is FSx's only.
 */
export const FSX_TAG_CHARACTERS: TagCharacters = {
  pattern: FSX_TAG_PATTERN,
  description: 'letters, numbers, spaces and _ . : / = + - @',
};

/**
 * AWS tag rules (FSx and EC2 alike): keys 1–128 characters, values at most 256, no `aws:` prefix,
 * at most 50 tags of which the library's ownership tags take `reserved`; with `characters`, only
 * those characters in keys and values.
 */
export function validateTags(
  scope: IConstruct,
  tags: Record<string, string> | undefined,
  reserved: number,
  prop = 'tags',
  characters?: TagCharacters,
): void {
  if (!tags) return;
  const max = 50 - reserved;
  const keys = Object.keys(tags);
  if (keys.length > max) {
    invalid(scope, prop, `at most ${max} tags are allowed (AWS allows 50 per resource and the library adds ${reserved}), not ${keys.length}`);
  }
  for (const key of keys) {
    const value = tags[key];
    if (Token.isUnresolved(key)) continue;
    if (key.length < 1 || key.length > 128) invalid(scope, prop, 'tag keys must be 1 to 128 characters long', key);
    if (key.toLowerCase().startsWith('aws:')) invalid(scope, prop, 'tag keys must not start with the reserved prefix "aws:"', key);
    if (key.startsWith('cdk-storage-snapshots:')) {
      invalid(scope, prop, 'tag keys starting with "cdk-storage-snapshots:" are the library\'s own ownership tags', key);
    }
    if (!Token.isUnresolved(value) && value.length > 256) {
      invalid(scope, prop, `tag values must be at most 256 characters long (tag "${key}" has ${value.length})`);
    }
    if (characters && !characters.pattern.test(key)) {
      invalid(scope, prop, `tag keys may contain only ${characters.description}`, key);
    }
    if (characters && !Token.isUnresolved(value) && !characters.pattern.test(value)) {
      invalid(scope, prop, `tag values may contain only ${characters.description} (tag "${key}")`, value);
    }
  }
}

/** Deploy-time waits are bounded by CloudFormation's one hour for a custom resource. */
export const MAX_TIMEOUT = Duration.hours(1);

export function validateTimeout(scope: IConstruct, timeout: Duration | undefined, prop = 'timeout'): void {
  if (!timeout || Token.isUnresolved(timeout.toSeconds())) return;
  const seconds = timeout.toSeconds();
  if (seconds < 60 || seconds > MAX_TIMEOUT.toSeconds()) {
    invalid(scope, prop, `must be between 1 minute and 1 hour (CloudFormation waits at most 1 hour for a custom resource), not ${timeout.toHumanString()}`);
  }
}
