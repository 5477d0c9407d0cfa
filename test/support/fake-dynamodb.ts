import { DeleteItemCommand, GetItemCommand, PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import type { AwsStub } from 'aws-sdk-client-mock';
import { awsError } from './aws-errors';
import { seededRandom } from './sim-clock';
import { CallRecord, SimCore, routeCommands } from './sim-core';

/** A marshalled attribute value, as the low-level client sends and receives it. */
export interface AV {
  S?: string;
  N?: string;
  B?: Uint8Array;
  BOOL?: boolean;
  NULL?: boolean;
  L?: AV[];
  M?: Record<string, AV>;
  SS?: string[];
  NS?: string[];
  BS?: Uint8Array[];
}
export type MarshalledItem = Record<string, AV>;

export interface FakeDynamoDbOptions {
  /** How often a GetItem without ConsistentRead returns an older version (the one current `lag` ago). @default 0.5 */
  readonly staleReadRate?: number;
  /** The longest lag of an eventually consistent read (ms); each stale read draws its lag in [0, this]. @default 1 s */
  readonly maxStaleMs?: number;
  /** How long after its TTL an expired item may stay (ms); each write of an item with a TTL draws its lag in [0, this]. @default 48 h */
  readonly maxTtlDeleteLagMs?: number;
  /** Seeds the fake's own PRNG (stale reads, TTL lags), so that it draws nothing from the world's fault plan. @default 7 */
  readonly seed?: number;
  /**
   * Applied to (a copy of) every call's input before anything else sees it (the fault plan, the
   * call log, the table): returns the input to process. Tests use it to play a broken handler,
   * e.g. `(cmd, input) => ({ ...input, ConditionExpression: undefined })`, or dropping ConsistentRead.
   */
  readonly rewriteInput?: (command: string, input: any) => any;
}

/** One version of an item: written by the mutating call `seq` (or seeded, or deleted by TTL: no seq). */
interface Version {
  readonly seq?: number;
  readonly at: number;
  readonly item: MarshalledItem | undefined;
  /** When DynamoDB's TTL process deletes this version (its TTL plus a drawn lag), if ever. */
  readonly deleteAt?: number;
  readonly ttlDeleted?: boolean;
}

/** A version as tests see it: the item unmarshalled (N as number, sets as Set). */
export interface ItemVersion {
  readonly seq?: number;
  readonly at: number;
  readonly item: Record<string, any> | undefined;
  /** Removed by the TTL process, not by a call. */
  readonly ttlDeleted?: boolean;
}

export interface SimTable {
  readonly name: string;
  readonly keyAttribute: string;
  readonly keyType: 'S' | 'N';
  readonly ttlAttribute?: string;
  deleted: boolean;
  /** Every version of every item, oldest first, by key (S value or canonical N). */
  readonly versions: Map<string, Version[]>;
}

const invalid = (message: string) => awsError('ValidationException', message, 400);
const notFound = () => awsError('ResourceNotFoundException', 'Requested resource not found', 400);
const FIVE_YEARS_MS = 5 * 365 * 24 * 3_600_000;

/**
 * DynamoDB tables (a hash key, an optional TTL attribute) behind GetItem, PutItem, UpdateItem and
 * DeleteItem, with the expressions a claim store uses and the faults the service has: every call
 * goes through SimCore.handle (throttling, 5xx, network errors, lost and hung responses, kills);
 * a read without ConsistentRead may return an older version; an expired item lingers until the
 * TTL process gets to it. Keeps every version of every item for the invariants.
 */
export class FakeDynamoDb {
  private readonly tables = new Map<string, SimTable>();
  private readonly opts: Required<Omit<FakeDynamoDbOptions, 'rewriteInput'>>;
  private readonly readRandom: () => number;
  private readonly ttlRandom: () => number;

  constructor(private readonly core: SimCore, private readonly options: FakeDynamoDbOptions = {}) {
    this.opts = { staleReadRate: 0.5, maxStaleMs: 1_000, maxTtlDeleteLagMs: 48 * 3_600_000, seed: 7, ...stripUndefined(options) };
    this.readRandom = seededRandom(this.opts.seed);
    this.ttlRandom = seededRandom(this.opts.seed + 1);
  }

  public createTable(name: string, keyAttribute: string, ttlAttribute?: string, keyType: 'S' | 'N' = 'S'): SimTable {
    if (this.tables.get(name)?.deleted === false) throw new Error(`table ${name} exists`);
    const t: SimTable = { name, keyAttribute, keyType, ttlAttribute, deleted: false, versions: new Map() };
    this.tables.set(name, t);
    return t;
  }

  /** Every later call naming the table fails with ResourceNotFoundException; its history stays readable. */
  public deleteTable(name: string): void {
    this.table(name).deleted = true;
  }

  public table(name: string): SimTable {
    const t = this.tables.get(name);
    if (!t) throw new Error(`no table ${name}`);
    return t;
  }

  /** The items in the table now (unmarshalled), expired ones included until the TTL process deletes them. */
  public items(name: string): Record<string, any>[] {
    const t = this.table(name);
    return [...t.versions.keys()].map((id) => this.versions(t, id).at(-1)?.item).filter((i) => i !== undefined).map(unmarshallItem);
  }

  /** One item as it is now (unmarshalled). */
  public item(name: string, key: string | number): Record<string, any> | undefined {
    const item = this.versions(this.table(name), keyId(key)).at(-1)?.item;
    return item && unmarshallItem(item);
  }

  /** Writes an item outside any call (a pre-existing item); the version has no seq. */
  public seedItem(name: string, item: MarshalledItem): void {
    const t = this.table(name);
    this.write(t, this.keyOf(t, item, true), item, undefined);
  }

  /** Every version of the item, oldest first; a deletion is a version with no item. */
  public history(name: string, key: string | number): ItemVersion[] {
    return this.versions(this.table(name), keyId(key)).map((v) => ({
      seq: v.seq, at: v.at, item: v.item && unmarshallItem(v.item), ...(v.ttlDeleted ? { ttlDeleted: true } : {}),
    }));
  }

  /** The item as it was just before the mutating call `seq` acted (whether or not that call wrote). */
  public itemBefore(name: string, key: string | number, seq: number): Record<string, any> | undefined {
    const callAt = this.core.log.find((r) => r.seq === seq)?.at;
    if (callAt === undefined) throw new Error(`no call ${seq} in the log`);
    let item: MarshalledItem | undefined;
    for (const v of this.versions(this.table(name), keyId(key))) {
      if (v.seq !== undefined ? v.seq >= seq : v.at > callAt) break;
      item = v.item;
    }
    return item && unmarshallItem(item);
  }

  public install(mock: AwsStub<any, any, any>): void {
    routeCommands(mock, 'dynamodb', [
      [GetItemCommand, (input) => this.call('GetItemCommand', input, false, (i) => this.getItem(i))],
      [PutItemCommand, (input) => this.call('PutItemCommand', input, true, (i, r) => this.putItem(i, r))],
      [UpdateItemCommand, (input) => this.call('UpdateItemCommand', input, true, (i, r) => this.updateItem(i, r))],
      [DeleteItemCommand, (input) => this.call('DeleteItemCommand', input, true, (i, r) => this.deleteItem(i, r))],
    ]);
  }

  private call(command: string, input: any, mutating: boolean, act: (input: any, record: CallRecord | undefined) => unknown): Promise<unknown> {
    const rewrite = this.options.rewriteInput;
    const processed = rewrite ? rewrite(command, structuredClone(input ?? {})) : input ?? {};
    // A PutItem makes an item (a claim): the world's `kill-after-create` also kills a Lambda right after one.
    return this.core.handle('dynamodb', command, processed, { mutating, creates: command === 'PutItemCommand' }, (record) => act(processed, record));
  }

  private getItem(input: any) {
    unsupported(input, ['ProjectionExpression', 'AttributesToGet']);
    const t = this.live(input.TableName);
    const id = this.keyOf(t, input.Key, false);
    new Expressions(input.ExpressionAttributeNames, undefined).checkAllUsed();
    const list = this.versions(t, id);
    let item = list.at(-1)?.item;
    if (!input.ConsistentRead && this.readRandom() < this.opts.staleReadRate) {
      const asOf = this.core.clock.now() - this.readRandom() * this.opts.maxStaleMs;
      item = undefined;
      for (const v of list) {
        if (v.at > asOf) break;
        item = v.item;
      }
    }
    return item ? { Item: item } : {};
  }

  private putItem(input: any, record: CallRecord | undefined) {
    unsupported(input, ['Expected', 'ConditionalOperator']);
    const t = this.live(input.TableName);
    if (!input.Item || typeof input.Item !== 'object') throw invalid('1 validation error detected: Value null at \'item\' failed to satisfy constraint: Member must not be null');
    Object.values(input.Item).forEach(validateValue);
    const id = this.keyOf(t, input.Item, true);
    const ex = this.expressions(input, ['NONE', 'ALL_OLD']);
    const condition = ex.condition(input.ConditionExpression);
    ex.checkAllUsed();
    checkSize(input.Item);
    const old = this.checkCondition(t, id, condition, input);
    this.write(t, id, input.Item, record);
    return input.ReturnValues === 'ALL_OLD' && old ? { Attributes: old } : {};
  }

  private updateItem(input: any, record: CallRecord | undefined) {
    unsupported(input, ['Expected', 'ConditionalOperator', 'AttributeUpdates']);
    const t = this.live(input.TableName);
    const id = this.keyOf(t, input.Key, false);
    const ex = this.expressions(input, ['NONE', 'ALL_OLD', 'ALL_NEW', 'UPDATED_OLD', 'UPDATED_NEW']);
    const condition = ex.condition(input.ConditionExpression);
    const update = input.UpdateExpression === undefined ? { set: [], remove: [] } : ex.update(input.UpdateExpression, t.keyAttribute);
    ex.checkAllUsed();
    const old = this.checkCondition(t, id, condition, input);
    const values = update.set.map(([path, operand]) => [path, evaluate(operand, old, true)] as const);
    const next: MarshalledItem = { ...(old ?? input.Key) };
    for (const [path, value] of values) next[path] = value!;
    for (const path of update.remove) delete next[path];
    checkSize(next);
    this.write(t, id, next, record);
    const touched = [...update.set.map(([p]) => p), ...update.remove];
    const pick = (item: MarshalledItem | undefined) => Object.fromEntries(touched.filter((p) => item?.[p]).map((p) => [p, item![p]]));
    switch (input.ReturnValues) {
      case 'ALL_NEW': return { Attributes: next };
      case 'ALL_OLD': return old ? { Attributes: old } : {};
      case 'UPDATED_NEW': return { Attributes: pick(next) };
      case 'UPDATED_OLD': return old ? { Attributes: pick(old) } : {};
      default: return {};
    }
  }

  private deleteItem(input: any, record: CallRecord | undefined) {
    unsupported(input, ['Expected', 'ConditionalOperator']);
    const t = this.live(input.TableName);
    const id = this.keyOf(t, input.Key, false);
    const ex = this.expressions(input, ['NONE', 'ALL_OLD']);
    const condition = ex.condition(input.ConditionExpression);
    ex.checkAllUsed();
    const old = this.checkCondition(t, id, condition, input);
    this.write(t, id, undefined, record);
    return input.ReturnValues === 'ALL_OLD' && old ? { Attributes: old } : {};
  }

  private expressions(input: any, returnValues: string[]): Expressions {
    if (input.ReturnValues !== undefined && !returnValues.includes(input.ReturnValues)) {
      throw invalid(`ReturnValues can only be ${returnValues.join(', ')} for this operation`);
    }
    const onFailure = input.ReturnValuesOnConditionCheckFailure;
    if (onFailure !== undefined && onFailure !== 'NONE' && onFailure !== 'ALL_OLD') throw invalid('ReturnValuesOnConditionCheckFailure can only be ALL_OLD or NONE');
    return new Expressions(input.ExpressionAttributeNames, input.ExpressionAttributeValues);
  }

  /** The item now (a strongly consistent view); throws ConditionalCheckFailedException if the condition does not hold. */
  private checkCondition(t: SimTable, id: string, condition: Cond | undefined, input: any): MarshalledItem | undefined {
    const old = this.versions(t, id).at(-1)?.item;
    if (condition && !test(condition, old)) {
      const extra = input.ReturnValuesOnConditionCheckFailure === 'ALL_OLD' && old ? { Item: structuredClone(old) } : {};
      throw awsError('ConditionalCheckFailedException', 'The conditional request failed', 400, extra);
    }
    return old;
  }

  private write(t: SimTable, id: string, item: MarshalledItem | undefined, record: CallRecord | undefined): void {
    const at = this.core.clock.now();
    const list = this.versions(t, id);
    t.versions.set(id, list);
    list.push({ seq: record?.seq, at, item: item && structuredClone(item), deleteAt: this.ttlDeleteAt(t, item, at) });
    if (record) record.resourceId = `${t.name}/${id}`;
  }

  /** When the TTL process deletes this item: its expiry (or now, if already past) plus a drawn lag. */
  private ttlDeleteAt(t: SimTable, item: MarshalledItem | undefined, at: number): number | undefined {
    const expiry = t.ttlAttribute && item?.[t.ttlAttribute]?.N !== undefined ? Number(item[t.ttlAttribute].N) * 1000 : undefined;
    // DynamoDB ignores a TTL that is not a number, and one more than five years in the past.
    if (expiry === undefined || !Number.isFinite(expiry) || expiry < at - FIVE_YEARS_MS) return undefined;
    return Math.max(expiry, at) + this.ttlRandom() * this.opts.maxTtlDeleteLagMs;
  }

  /** The versions of one item, with the TTL deletion applied (lazily) once it is due. */
  private versions(t: SimTable, id: string): Version[] {
    const list = t.versions.get(id) ?? [];
    const last = list.at(-1);
    if (last?.item && last.deleteAt !== undefined && last.deleteAt <= this.core.clock.now()) {
      list.push({ at: last.deleteAt, item: undefined, ttlDeleted: true });
    }
    return list;
  }

  private live(name: unknown): SimTable {
    const t = typeof name === 'string' ? this.tables.get(name) : undefined;
    if (!t || t.deleted) throw notFound();
    return t;
  }

  /** The item's key id; ValidationException if the key is missing, of the wrong type, or (for Key) has other attributes. */
  private keyOf(t: SimTable, key: MarshalledItem | undefined, isItem: boolean): string {
    const k = t.keyAttribute;
    const mismatch = () => invalid('The provided key element does not match the schema');
    if (!key || typeof key !== 'object') throw isItem ? invalid('Item is required') : mismatch();
    if (!isItem && Object.keys(key).length !== 1) throw mismatch();
    const value = key[k];
    if (!value) throw isItem ? invalid(`One or more parameter values were invalid: Missing the key ${k} in the item`) : mismatch();
    validateValue(value);
    const raw = value[t.keyType];
    if (typeof raw !== 'string') {
      throw isItem ? invalid(`One or more parameter values were invalid: Type mismatch for key ${k} expected: ${t.keyType} actual: ${typeOf(value)}`) : mismatch();
    }
    if (raw === '') throw invalid(`One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: ${k}`);
    return t.keyType === 'N' ? canonicalNumber(raw) : raw;
  }
}

// ---------------------------------------------------------------------------------------------
// Expressions: a tokenizer, a recursive-descent parser (NOT > AND > OR) and their evaluation.
// ---------------------------------------------------------------------------------------------

type Operand =
  | { readonly kind: 'path'; readonly name: string }
  | { readonly kind: 'value'; readonly value: AV }
  | { readonly kind: 'if_not_exists'; readonly path: string; readonly fallback: Operand }
  | { readonly kind: 'list_append'; readonly left: Operand; readonly right: Operand }
  | { readonly kind: 'arith'; readonly op: '+' | '-'; readonly left: Operand; readonly right: Operand };

type Cond =
  | { readonly op: 'or' | 'and'; readonly left: Cond; readonly right: Cond }
  | { readonly op: 'not'; readonly cond: Cond }
  | { readonly op: 'attribute_exists' | 'attribute_not_exists'; readonly path: string }
  | { readonly op: 'cmp'; readonly cmp: string; readonly left: Operand; readonly right: Operand };

interface Update {
  readonly set: Array<[string, Operand]>;
  readonly remove: string[];
}

const COMPARATORS = ['=', '<>', '<', '<=', '>', '>='];
const KEYWORDS = new Set(['AND', 'OR', 'NOT', 'SET', 'REMOVE', 'ADD', 'DELETE', 'BETWEEN', 'IN']);
/** DynamoDB functions the fake does not implement (a plain Error, not a ValidationException: the fake's limit, not the caller's). */
const NOT_IMPLEMENTED = ['begins_with', 'contains', 'attribute_type', 'size'];

/** The placeholders of one call, and which of them its expressions used. */
class Expressions {
  private readonly used = new Set<string>();

  constructor(private readonly names: Record<string, string> | undefined, private readonly values: Record<string, AV> | undefined) {
    if (names && Object.keys(names).length === 0) throw invalid('ExpressionAttributeNames must not be empty');
    if (values && Object.keys(values).length === 0) throw invalid('ExpressionAttributeValues must not be empty');
    Object.values(values ?? {}).forEach(validateValue);
  }

  public condition(text: string | undefined): Cond | undefined {
    if (text === undefined) return undefined;
    const p = new Parser(text, 'ConditionExpression', this);
    const c = p.or();
    p.end();
    return c;
  }

  public update(text: string, keyAttribute: string): Update {
    const u = new Parser(text, 'UpdateExpression', this).update();
    const paths = [...u.set.map(([p]) => p), ...u.remove];
    const twice = paths.find((p, i) => paths.indexOf(p) !== i);
    if (twice) throw invalid(`Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [${twice}], path two: [${twice}]`);
    if (paths.includes(keyAttribute)) throw invalid(`One or more parameter values were invalid: Cannot update attribute ${keyAttribute}. This attribute is part of the key`);
    return u;
  }

  public name(token: string): string {
    const name = this.names?.[token];
    if (name === undefined) throw invalid(`An expression attribute name used in the document path is not defined; attribute name: ${token}`);
    this.used.add(token);
    return name;
  }

  public value(token: string): AV {
    const value = this.values?.[token];
    if (value === undefined) throw invalid(`An expression attribute value used in expression is not defined; attribute value: ${token}`);
    this.used.add(token);
    return value;
  }

  public checkAllUsed(): void {
    for (const [what, map] of [['ExpressionAttributeNames', this.names], ['ExpressionAttributeValues', this.values]] as const) {
      const unused = Object.keys(map ?? {}).filter((k) => !this.used.has(k));
      if (unused.length) throw invalid(`Value provided in ${what} unused in expressions: keys: {${unused.join(', ')}}`);
    }
  }
}

class Parser {
  private readonly tokens: string[] = [];
  private pos = 0;

  constructor(text: string, private readonly what: string, private readonly ex: Expressions) {
    if (typeof text !== 'string' || !text.trim()) throw invalid(`Invalid ${what}: The expression can not be empty;`);
    const token = /\s*(<>|<=|>=|[=<>(),+\-.[\]]|#[A-Za-z0-9_]+|:[A-Za-z0-9_]+|[A-Za-z_][A-Za-z0-9_]*|\d+)\s*/y;
    while (token.lastIndex < text.length) {
      const start = token.lastIndex;
      const m = token.exec(text);
      if (!m) throw invalid(`Invalid ${what}: Syntax error; token: "${text.slice(start).trim()[0]}", near: "${text.slice(start).trim()}"`);
      this.tokens.push(m[1]);
    }
  }

  public or(): Cond {
    let c = this.and();
    while (this.accept('OR')) c = { op: 'or', left: c, right: this.and() };
    return c;
  }

  public end(): void {
    if (this.pos < this.tokens.length) throw this.syntax();
  }

  public update(): Update {
    const u: Update = { set: [], remove: [] };
    const seen = new Set<string>();
    while (this.peek() !== undefined) {
      const clause = this.next().toUpperCase();
      if (clause === 'ADD' || clause === 'DELETE') throw new Error(`the dynamodb fake does not implement ${clause} in update expressions`);
      if (clause !== 'SET' && clause !== 'REMOVE') throw this.syntax(clause);
      if (seen.has(clause)) throw invalid(`Invalid UpdateExpression: The "${clause}" section can only be used once in an update expression;`);
      seen.add(clause);
      do {
        if (clause === 'REMOVE') {
          u.remove.push(this.path());
        } else {
          const path = this.path();
          this.expect('=');
          u.set.push([path, this.setValue()]);
        }
      } while (this.accept(','));
    }
    return u;
  }

  private and(): Cond {
    let c = this.not();
    while (this.accept('AND')) c = { op: 'and', left: c, right: this.not() };
    return c;
  }

  private not(): Cond {
    return this.accept('NOT') ? { op: 'not', cond: this.not() } : this.primary();
  }

  private primary(): Cond {
    if (this.accept('(')) {
      const c = this.or();
      this.expect(')');
      return c;
    }
    const fn = this.functionName();
    if (fn === 'attribute_exists' || fn === 'attribute_not_exists') {
      this.next();
      this.expect('(');
      const path = this.path();
      this.expect(')');
      return { op: fn, path };
    }
    if (fn) throw this.unknownFunction(fn);
    const left = this.operand();
    const cmp = this.next();
    if (/^(BETWEEN|IN)$/i.test(cmp)) throw new Error(`the dynamodb fake does not implement ${cmp}`);
    if (!COMPARATORS.includes(cmp)) throw this.syntax(cmp);
    return { op: 'cmp', cmp, left, right: this.operand() };
  }

  private setValue(): Operand {
    const left = this.updateOperand();
    const op = this.peek();
    if (op !== '+' && op !== '-') return left;
    this.next();
    return { kind: 'arith', op, left, right: this.updateOperand() };
  }

  private updateOperand(): Operand {
    const fn = this.functionName();
    if (fn === 'if_not_exists' || fn === 'list_append') {
      this.next();
      this.expect('(');
      const first = fn === 'if_not_exists' ? this.path() : this.updateOperand();
      this.expect(',');
      const second = this.updateOperand();
      this.expect(')');
      return fn === 'if_not_exists' ? { kind: fn, path: first as string, fallback: second } : { kind: fn, left: first as Operand, right: second };
    }
    if (fn) throw this.unknownFunction(fn);
    return this.operand();
  }

  private operand(): Operand {
    const t = this.peek();
    if (!t?.startsWith(':')) return { kind: 'path', name: this.path() };
    this.next();
    return { kind: 'value', value: this.ex.value(t) };
  }

  private path(): string {
    const t = this.next();
    let name: string;
    if (t.startsWith('#')) name = this.ex.name(t);
    else if (/^[A-Za-z_]/.test(t) && !KEYWORDS.has(t.toUpperCase())) name = t;
    else throw this.syntax(t);
    const after = this.peek();
    if (after === '.' || after === '[') throw new Error(`the dynamodb fake does not implement nested document paths (${t}${after}...)`);
    return name;
  }

  private functionName(): string | undefined {
    const t = this.peek();
    return t && /^[A-Za-z_]/.test(t) && this.peek(1) === '(' ? t : undefined;
  }

  private unknownFunction(fn: string): Error {
    if (NOT_IMPLEMENTED.includes(fn)) return new Error(`the dynamodb fake does not implement ${fn}()`);
    return invalid(`Invalid ${this.what}: Invalid function name; function: ${fn}`);
  }

  private peek(offset = 0): string | undefined {
    return this.tokens[this.pos + offset];
  }

  private next(): string {
    if (this.pos >= this.tokens.length) throw this.syntax('<EOF>');
    return this.tokens[this.pos++];
  }

  /** Consumes the token if it is `want` (keywords in any case). */
  private accept(want: string): boolean {
    const t = this.peek();
    if (t === undefined || (KEYWORDS.has(want) ? t.toUpperCase() !== want : t !== want)) return false;
    this.pos++;
    return true;
  }

  private expect(want: string): void {
    if (!this.accept(want)) throw this.syntax();
  }

  private syntax(token = this.peek() ?? '<EOF>'): Error {
    return invalid(`Invalid ${this.what}: Syntax error; token: "${token}", near: "${this.tokens.slice(Math.max(0, this.pos - 2), this.pos + 2).join(' ')}"`);
  }
}

function test(c: Cond, item: MarshalledItem | undefined): boolean {
  switch (c.op) {
    case 'or': return test(c.left, item) || test(c.right, item);
    case 'and': return test(c.left, item) && test(c.right, item);
    case 'not': return !test(c.cond, item);
    case 'attribute_exists': return item?.[c.path] !== undefined;
    case 'attribute_not_exists': return item?.[c.path] === undefined;
    case 'cmp': return compare(c.cmp, evaluate(c.left, item, false), evaluate(c.right, item, false));
  }
}

/**
 * A comparison with a missing operand is false, except `<>`: DynamoDB evaluates
 * `attr <> :v` to true when attr does not exist.
 */
function compare(cmp: string, a: AV | undefined, b: AV | undefined): boolean {
  if (!a || !b) return cmp === '<>' && a !== b;
  if (cmp === '=') return same(a, b);
  if (cmp === '<>') return !same(a, b);
  const order = ordering(a, b);
  if (order === undefined) return false; // different types, or not scalars
  return cmp === '<' ? order < 0 : cmp === '<=' ? order <= 0 : cmp === '>' ? order > 0 : order >= 0;
}

/** An operand's value; in an update (`required`), a missing path or a wrong type is a ValidationException. */
function evaluate(o: Operand, item: MarshalledItem | undefined, required: boolean): AV | undefined {
  const need = (v: AV | undefined) => v ?? fail('The provided expression refers to an attribute that does not exist in the item');
  const fail = (message: string): never => {
    throw invalid(message);
  };
  const wrongType = (fn: string, v: AV) => fail(`Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: ${fn}, operand type: ${typeOf(v)}`);
  switch (o.kind) {
    case 'path': return required ? need(item?.[o.name]) : item?.[o.name];
    case 'value': return o.value;
    case 'if_not_exists': return item?.[o.path] ?? evaluate(o.fallback, item, true);
    case 'list_append': {
      const [l, r] = [need(evaluate(o.left, item, true)), need(evaluate(o.right, item, true))];
      if (!l.L) return wrongType('list_append', l);
      if (!r.L) return wrongType('list_append', r);
      return { L: [...l.L, ...r.L] };
    }
    case 'arith': {
      const [l, r] = [need(evaluate(o.left, item, true)), need(evaluate(o.right, item, true))];
      if (l.N === undefined) return wrongType(o.op, l);
      if (r.N === undefined) return wrongType(o.op, r);
      if (isInteger(l.N) && isInteger(r.N)) return { N: String(o.op === '+' ? BigInt(l.N) + BigInt(r.N) : BigInt(l.N) - BigInt(r.N)) };
      return { N: String(o.op === '+' ? Number(l.N) + Number(r.N) : Number(l.N) - Number(r.N)) };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

const TYPES = ['S', 'N', 'B', 'BOOL', 'NULL', 'L', 'M', 'SS', 'NS', 'BS'] as const;
const NUMBER = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;

function typeOf(v: AV): string {
  return Object.keys(v).find((k) => (v as any)[k] !== undefined) ?? '?';
}

function isInteger(n: string): boolean {
  return /^\s*[+-]?\d+\s*$/.test(n);
}

function canonicalNumber(n: string): string {
  return isInteger(n) ? BigInt(n.trim()).toString() : String(Number(n));
}

function keyId(key: string | number): string {
  return typeof key === 'number' ? canonicalNumber(String(key)) : key;
}

/** A well-formed AttributeValue: exactly one type, numbers that parse, non-empty sets without duplicates. */
function validateValue(v: unknown): void {
  const types = v && typeof v === 'object' ? Object.keys(v).filter((k) => (v as any)[k] !== undefined) : [];
  if (types.length !== 1 || !(TYPES as readonly string[]).includes(types[0])) {
    throw invalid('Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes');
  }
  const av = v as AV;
  if (av.N !== undefined && !NUMBER.test(av.N)) throw invalid('A value provided cannot be converted into a number');
  if (av.NULL !== undefined && av.NULL !== true) throw invalid('One or more parameter values were invalid: Null attribute value types must have the value of true');
  const set = av.SS ?? av.NS ?? av.BS;
  if (set) {
    if (set.length === 0) throw invalid('One or more parameter values were invalid: An string set  may not be empty');
    const members = set.map((m) => (av.NS ? canonicalNumber(m as string) : av.BS ? Buffer.from(m as Uint8Array).toString('base64') : m));
    if (new Set(members).size !== members.length) throw invalid('One or more parameter values were invalid: Input collection contains duplicates');
    av.NS?.forEach((n) => validateValue({ N: n }));
  }
  av.L?.forEach(validateValue);
  Object.values(av.M ?? {}).forEach(validateValue);
}

function compareNumbers(a: string, b: string): number {
  if (isInteger(a) && isInteger(b)) {
    const [x, y] = [BigInt(a.trim()), BigInt(b.trim())];
    return x < y ? -1 : x > y ? 1 : 0;
  }
  return Math.sign(Number(a) - Number(b));
}

/** Scalars of one type in DynamoDB's order (numbers numerically, strings and binaries by their UTF-8 bytes). */
function ordering(a: AV, b: AV): number | undefined {
  if (a.N !== undefined && b.N !== undefined) return compareNumbers(a.N, b.N);
  if (a.S !== undefined && b.S !== undefined) return Buffer.compare(Buffer.from(a.S), Buffer.from(b.S));
  if (a.B !== undefined && b.B !== undefined) return Buffer.compare(Buffer.from(a.B), Buffer.from(b.B));
  return undefined;
}

/** Deep equality of two marshalled values (numbers by value, sets in any order). */
function same(a: AV, b: AV): boolean {
  const type = typeOf(a);
  if (type !== typeOf(b)) return false;
  switch (type) {
    case 'N': case 'S': case 'B': return ordering(a, b) === 0;
    case 'L': return a.L!.length === b.L!.length && a.L!.every((x, i) => same(x, b.L![i]));
    case 'M': {
      const keys = Object.keys(a.M!);
      return keys.length === Object.keys(b.M!).length && keys.every((k) => b.M![k] !== undefined && same(a.M![k], b.M![k]));
    }
    case 'SS': case 'NS': case 'BS': {
      const key = type === 'SS' ? 'S' : type === 'NS' ? 'N' : 'B';
      const [xs, ys] = [(a as any)[type] as any[], (b as any)[type] as any[]];
      return xs.length === ys.length && xs.every((x) => ys.some((y) => same({ [key]: x }, { [key]: y })));
    }
    default: return (a as any)[type] === (b as any)[type];
  }
}

/** DynamoDB's item size limit (400 KB), with its sizing rules approximated. */
function checkSize(item: MarshalledItem): void {
  const size = (v: AV): number => {
    if (v.S !== undefined) return Buffer.byteLength(v.S);
    if (v.N !== undefined) return Math.ceil(v.N.length / 2) + 1;
    if (v.B !== undefined) return v.B.length;
    if (v.L) return 3 + v.L.reduce((n, x) => n + 1 + size(x), 0);
    if (v.M) return 3 + Object.entries(v.M).reduce((n, [k, x]) => n + 1 + Buffer.byteLength(k) + size(x), 0);
    if (v.SS ?? v.NS) return (v.SS ?? v.NS)!.reduce((n, x) => n + Buffer.byteLength(x), 0);
    if (v.BS) return v.BS.reduce((n, x) => n + x.length, 0);
    return 1;
  };
  const total = Object.entries(item).reduce((n, [k, v]) => n + Buffer.byteLength(k) + size(v), 0);
  if (total > 400 * 1024) throw invalid('Item size has exceeded the maximum allowed size');
}

/** Marshalled → plain (N as number, sets as Set, NULL as null), as @aws-sdk/util-dynamodb's unmarshall does. */
export function unmarshallValue(v: AV): any {
  if (v.S !== undefined) return v.S;
  if (v.N !== undefined) return Number(v.N);
  if (v.BOOL !== undefined) return v.BOOL;
  if (v.NULL !== undefined) return null;
  if (v.B !== undefined) return v.B;
  if (v.L) return v.L.map(unmarshallValue);
  if (v.M) return unmarshallItem(v.M);
  if (v.SS) return new Set(v.SS);
  if (v.NS) return new Set(v.NS.map(Number));
  if (v.BS) return new Set(v.BS);
  return undefined;
}

export function unmarshallItem(item: MarshalledItem): Record<string, any> {
  return Object.fromEntries(Object.entries(item).map(([k, v]) => [k, unmarshallValue(v)]));
}

/** Inputs the fake does not implement fail loudly (a plain Error), rather than being ignored. */
function unsupported(input: any, fields: string[]): void {
  for (const f of fields) if (input[f] !== undefined) throw new Error(`the dynamodb fake does not implement ${f}`);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
