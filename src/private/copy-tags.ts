import { ITaggable, Lazy, TagManager, TagType } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import { encodeTags } from './encode';
import { validateTags } from './validation';

/**
 * The tags of the copies a construct makes: the `tags` prop plus whatever `Tags.of(scope)` adds to
 * the construct (CDK's tag aspects reach any `ITaggable`), rendered lazily into the custom
 * resource's `Tags` property. Tags apply to copies made from then on: a tag change alone never
 * forces a new copy.
 */
export class CopyTags implements ITaggable {
  public readonly tags: TagManager;
  /** The JSON object of tags (keys sorted), or nothing when there are none. */
  public readonly encoded: string;

  constructor(scope: IConstruct, resourceType: string, initial: Record<string, string> | undefined, reserved: number, prop = 'tags') {
    validateTags(scope, initial, reserved, prop);
    const tags = new TagManager(TagType.MAP, resourceType, initial);
    this.tags = tags;
    this.encoded = Lazy.string({ produce: () => encodeTags(scope, rendered(tags)) });
    scope.node.addValidation({
      validate: () => {
        // Tags.of() may have added tags after the constructor checked the prop.
        try {
          validateTags(scope, rendered(tags), reserved, `${prop} (with those added by Tags.of)`);
          return [];
        } catch (err) {
          return [(err as Error).message];
        }
      },
    });
  }
}

function rendered(tags: TagManager): Record<string, string> | undefined {
  const out = tags.renderTags() as Record<string, string> | undefined;
  return out && Object.keys(out).length > 0 ? out : undefined;
}
