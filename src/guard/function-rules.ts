// Function and cast rules: denied functions, set_config, and names resolved from strings (reg* casts, nextval('s.t')).
import { REG_TYPES, WRAPPED_FUNCTIONS } from '../catalog/surfaces.js';
import type { RuleContext } from './analysis.js';
import { parseQualifiedName } from './qualified-name.js';
import {
  DENIED_FUNCTION_PREFIXES,
  DENIED_FUNCTIONS,
  NAME_ARGUMENT_FUNCTIONS,
  NAME_TYPES,
  SCHEMA_ARGUMENT_FUNCTIONS,
} from './rule-tables.js';
import { GUARDED_SETTINGS, isReadableClientEncoding } from './settings-rules.js';
import { isParam, stringList, type Json } from './tree-nodes.js';

export function funcCall(a: RuleContext, node: Json): void {
  const parts = stringList((node.funcname as unknown[]) ?? []) ?? [];
  const name = parts[parts.length - 1] ?? '';
  if (parts.length > 1 && parts[parts.length - 2] !== 'pg_catalog') return;
  // pg_cancel_backend/pg_terminate_backend reach other backends: only through the filter's wrappers, which signal
  // nothing but the tenant's own (see catalog/install.ts signalWrapper); refused when the filter is off.
  const wrappedSignal = a.catalog !== null && WRAPPED_FUNCTIONS[name] === 'signal';
  if (name === 'pg_notify') {
    a.channelCall(parts, node);
    return;
  }
  const rule =
    (wrappedSignal ? undefined : DENIED_FUNCTIONS.get(name)) ??
    DENIED_FUNCTION_PREFIXES.find(([prefix]) => name.startsWith(prefix))?.[1] ??
    (a.extraDeniedFunctions.has(name) ? 'denied_function' : undefined);
  if (rule !== undefined) {
    a.deny(rule, `the function ${name}()`);
    return;
  }
  if (a.catalog !== null) a.catalogRefusal(a.catalog.call(parts, node));
  const args = (node.args as unknown[] | undefined) ?? [];
  if (name === 'set_config') {
    a.literalDependent = true;
    a.changesSettings = true;
    const setting = a.literal(args[0]);
    if (setting?.includes('.') === true) a.customSettings.add(setting.toLowerCase());
    if (setting === undefined || GUARDED_SETTINGS.has(setting.toLowerCase())) {
      a.deny(
        'session_state',
        setting === undefined ? 'set_config() with a computed setting name' : `set_config('${setting}', ...)`,
      );
    } else if (setting.toLowerCase() === 'client_encoding') {
      const value = a.literal(args[1]);
      if (value === undefined || !isReadableClientEncoding(value)) {
        a.deny('session_state', "set_config('client_encoding', ...) to an encoding the guard cannot read");
      }
    }
    return;
  }
  if (NAME_ARGUMENT_FUNCTIONS.has(name) || SCHEMA_ARGUMENT_FUNCTIONS.has(name)) {
    a.literalDependent = true;
    const schemaArgs =
      name === 'has_schema_privilege' ? [args[args.length - 2]] : SCHEMA_ARGUMENT_FUNCTIONS.has(name) ? [args[0]] : [];
    for (const arg of args) {
      if (isParam(arg)) {
        a.deny('schema', `${name}() with a name passed as a parameter`);
        return;
      }
      const text = a.literal(arg);
      if (text === undefined) continue;
      if (schemaArgs.includes(arg)) {
        const parts = parseQualifiedName(text);
        if (parts !== null && parts.length === 1) a.reference(parts[0]!, parts[0]!);
        continue;
      }
      if (SCHEMA_ARGUMENT_FUNCTIONS.has(name)) continue;
      const parts = parseQualifiedName(text);
      if (parts !== null) a.qualified(parts);
    }
  }
}

export function typeCast(a: RuleContext, node: Json): void {
  const typeName = node.typeName as Json | undefined;
  const parts = stringList((typeName?.names as unknown[]) ?? []) ?? [];
  const type = parts[parts.length - 1];
  if (type === undefined || (parts.length > 1 && parts[0] !== 'pg_catalog')) return;
  if (a.catalog !== null && REG_TYPES.has(type)) {
    a.catalogRefusal(a.catalog.cast(node, type, typeName!));
    // A parameter ($1::regtype: psycopg's TypeInfo.fetch) is passed to <type>_in and resolved when the statement
    // runs, within what the session may see: another tenant's name fails as a missing one. Without the filter it is
    // refused below.
    if (isParam(node.arg)) return;
  }
  const isNameType = NAME_TYPES.has(type);
  if (!isNameType && type !== 'regnamespace') return;
  a.literalDependent = true;
  if (isParam(node.arg)) {
    a.deny('schema', `a parameter cast to ${type}`);
    return;
  }
  const text = a.literal(node.arg);
  if (text === undefined) return;
  const name = parseQualifiedName(text);
  if (name === null) return;
  if (type === 'regnamespace') a.reference(name[0]!, name[0]!);
  else a.qualified(name);
}

/**
 * A string literal shaped like another tenant's qualified name ('tenant_b.seq') is judged as a name wherever it
 * appears, because a reg* column, parameter or default can turn it into one at run time unseen by the parser.
 */
export function stringConstant(a: RuleContext, node: Json): void {
  const text = (node.sval as Json | undefined)?.sval;
  if (typeof text !== 'string' || a.tenantSchemaShape === null || text.length > 200 || !text.includes('.')) return;
  const parts = parseQualifiedName(text);
  if (parts === null || parts.length < 2 || !a.tenantSchemaShape.test(parts[parts.length - 2]!)) return;
  a.literalDependent = true;
  a.qualified(parts.length > 3 ? parts : parts.slice(parts.length - 2));
}
