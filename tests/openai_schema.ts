/**
 * A small JSON-schema validator for the subset OpenAI's OpenAPI document (3.1) uses in the
 * schemas of tests/fixtures/openai/schemas.json: type (one or several), properties, required,
 * enum, const, anyOf, oneOf, allOf, nullable (3.0 style), items, $ref, additionalProperties and
 * pattern. Annotations (description, format, discriminator, default, x-*) are ignored; any other
 * keyword throws, so that a schema this validator does not understand can never pass silently.
 */

export type Schema = Record<string, unknown>;

const ANNOTATIONS = new Set([
  "description",
  "title",
  "format",
  "discriminator",
  "default",
  "deprecated",
  "example",
  "examples",
]);
const CHECKED = new Set([
  "type",
  "properties",
  "required",
  "enum",
  "const",
  "anyOf",
  "oneOf",
  "allOf",
  "nullable",
  "items",
  "$ref",
  "additionalProperties",
  "pattern",
]);

function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

const matchesType = (v: unknown, t: string) => {
  const actual = typeOf(v);
  return actual === t || (t === "number" && actual === "integer");
};

/** Validates against named component schemas; returns the errors (empty: valid). */
export class Validator {
  constructor(private schemas: Record<string, Schema>) {}

  validate(name: string, value: unknown): string[] {
    const errors: string[] = [];
    this.#check({ $ref: `#/components/schemas/${name}` }, value, "$", errors);
    return errors;
  }

  /** Throws with every error, naming the value's path. */
  assert(name: string, value: unknown): void {
    const errors = this.validate(name, value);
    if (errors.length) {
      throw new Error(
        `not a valid ${name}:\n  ${errors.slice(0, 12).join("\n  ")}\n` +
          JSON.stringify(value, (_k, v) => typeof v === "string" && v.length > 80 ? "…" : v)
            .slice(0, 1500),
      );
    }
  }

  #check(schema: Schema, v: unknown, path: string, errors: string[]): void {
    for (const k of Object.keys(schema)) {
      if (!CHECKED.has(k) && !ANNOTATIONS.has(k) && !k.startsWith("x-")) {
        throw new Error(`${path}: schema keyword "${k}" is not supported by this validator`);
      }
    }
    if (typeof schema.$ref === "string") {
      const name = schema.$ref.replace("#/components/schemas/", "");
      const target = this.schemas[name];
      if (!target) throw new Error(`${path}: $ref ${schema.$ref} is not in the fixture`);
      // 3.1: siblings of $ref apply too (the stream chunk's usage has "nullable" beside it).
      if (schema.nullable === true && v === null) return;
      this.#check(target, v, path, errors);
    }
    if (v === null && schema.nullable === true) return;
    if (schema.type !== undefined) {
      const types = [schema.type].flat() as string[];
      if (!types.some((t) => matchesType(v, t))) {
        errors.push(`${path}: expected ${types.join(" | ")}, got ${typeOf(v)}`);
        return;
      }
    }
    if (schema.enum && !(schema.enum as unknown[]).includes(v)) {
      errors.push(`${path}: ${JSON.stringify(v)} is not one of ${JSON.stringify(schema.enum)}`);
    }
    if ("const" in schema && schema.const !== v) {
      errors.push(`${path}: expected ${JSON.stringify(schema.const)}`);
    }
    if (typeof schema.pattern === "string" && typeof v === "string") {
      if (!new RegExp(schema.pattern, "u").test(v)) {
        errors.push(`${path}: "${v}" does not match /${schema.pattern}/`);
      }
    }
    const branches = (key: "anyOf" | "oneOf") => {
      const list = schema[key] as Schema[] | undefined;
      if (!list) return;
      const results = list.map((s) => {
        const e: string[] = [];
        this.#check(s, v, path, e);
        return e;
      });
      const passed = results.filter((e) => e.length === 0).length;
      if (key === "anyOf" ? passed === 0 : passed !== 1) {
        errors.push(
          `${path}: ${key} matched ${passed} of ${list.length} branches` +
            (passed === 0
              ? ` (closest: ${results.sort((a, b) => a.length - b.length)[0].join("; ")})`
              : ""),
        );
      }
    };
    branches("anyOf");
    branches("oneOf");
    for (const s of (schema.allOf as Schema[] | undefined) ?? []) this.#check(s, v, path, errors);

    if (typeOf(v) === "object") {
      const obj = v as Record<string, unknown>;
      const props = (schema.properties ?? {}) as Record<string, Schema>;
      for (const r of (schema.required as string[] | undefined) ?? []) {
        if (!(r in obj)) errors.push(`${path}: required property "${r}" is missing`);
      }
      for (const [k, value] of Object.entries(obj)) {
        if (props[k]) {
          this.#check(props[k], value, `${path}.${k}`, errors);
        } else if (schema.additionalProperties === false) {
          errors.push(`${path}: property "${k}" is not allowed`);
        } else if (typeof schema.additionalProperties === "object") {
          this.#check(schema.additionalProperties as Schema, value, `${path}.${k}`, errors);
        }
      }
    }
    if (Array.isArray(v) && schema.items) {
      v.forEach((item, i) => this.#check(schema.items as Schema, item, `${path}[${i}]`, errors));
    }
  }
}
