import { MANAGED_BY, OWNERSHIP_TAG_KEYS } from '../../src/private/ownership-tags';

// The constructs name the same keys in IAM conditions: one definition, bundled into the handlers.
export { MANAGED_BY, OWNERSHIP_TAG_KEYS };

/** Who owns a copy: one custom resource (or schedule) of one stack. */
export interface Owner {
  readonly stackId: string;
  /** The custom resource's logical id, or the schedule's id. */
  readonly owner: string;
}

/** A tag as the services return it. */
export interface Tag {
  readonly Key?: string;
  readonly Value?: string;
}

/** A tag as we send it. */
export interface KeyValue {
  readonly Key: string;
  readonly Value: string;
}

/** The tags a copy carries so that it can be found, adopted and pruned safely later. */
export function ownershipTags(owner: Owner, propsHash: string, token: string): KeyValue[] {
  return [
    { Key: OWNERSHIP_TAG_KEYS.managedBy, Value: MANAGED_BY },
    { Key: OWNERSHIP_TAG_KEYS.stackId, Value: owner.stackId },
    { Key: OWNERSHIP_TAG_KEYS.owner, Value: owner.owner },
    { Key: OWNERSHIP_TAG_KEYS.propsHash, Value: propsHash },
    { Key: OWNERSHIP_TAG_KEYS.token, Value: token },
  ];
}

/** The owner of the copies one custom resource makes: its stack and its logical id. */
export function requestOwner(event: { readonly StackId: string; readonly LogicalResourceId: string }): Owner {
  return { stackId: event.StackId, owner: event.LogicalResourceId };
}

/** The user tags a construct wrote into its custom resource's `Tags` property (a JSON object). */
export function parseUserTags(json: string | undefined): Record<string, string> {
  return json ? (JSON.parse(json) as Record<string, string>) : {};
}

/** User tags plus ours; ours win, so a user cannot forge or drop ownership. */
export function withOwnershipTags(userTags: Record<string, string>, ours: KeyValue[]): KeyValue[] {
  const reserved = new Set(ours.map((t) => t.Key));
  const user = Object.entries(userTags)
    .filter(([key]) => !reserved.has(key))
    .map(([Key, Value]) => ({ Key, Value }));
  return [...user, ...ours];
}

export function tagValue(tags: readonly Tag[] | undefined, key: string): string | undefined {
  return tags?.find((t) => t.Key === key)?.Value;
}

/**
 * The one check made before anything is deleted or adopted: the copy carries our tags naming this
 * very stack and resource. IAM cannot limit FSx `TagResource` to creation, so for FSx this check
 * in code is what keeps the library from deleting a copy someone else tagged to look like ours.
 */
export function isOwnedBy(tags: readonly Tag[] | undefined, owner: Owner): boolean {
  return (
    tagValue(tags, OWNERSHIP_TAG_KEYS.managedBy) === MANAGED_BY &&
    tagValue(tags, OWNERSHIP_TAG_KEYS.stackId) === owner.stackId &&
    tagValue(tags, OWNERSHIP_TAG_KEYS.owner) === owner.owner
  );
}

/** Owned by this resource, and made for properties whose identity hash is `propsHash`. */
export function isMadeFor(tags: readonly Tag[] | undefined, owner: Owner, propsHash: string): boolean {
  return isOwnedBy(tags, owner) && tagValue(tags, OWNERSHIP_TAG_KEYS.propsHash) === propsHash;
}

/** Owned by this resource, and made by the request whose client token is `token`. */
export function isMadeBy(tags: readonly Tag[] | undefined, owner: Owner, token: string): boolean {
  return isOwnedBy(tags, owner) && tagValue(tags, OWNERSHIP_TAG_KEYS.token) === token;
}
