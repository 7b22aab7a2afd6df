// Example JSON Schemas for JSON mode, and a small validator for the answer (the common keywords:
// type, properties, required, additionalProperties, items, enum, const, bounds and lengths).

export const EXAMPLES = {
  chart: {
    label: { en: "Chart reading", zh: "读取图表" },
    schema: {
      type: "object",
      properties: {
        title: { type: "string" },
        chart_type: { type: "string", enum: ["bar", "line", "pie", "scatter", "other"] },
        series: {
          type: "array",
          items: {
            type: "object",
            properties: { label: { type: "string" }, value: { type: "number" } },
            required: ["label", "value"],
            additionalProperties: false,
          },
        },
      },
      required: ["title", "chart_type", "series"],
      additionalProperties: false,
    },
  },
  invoice: {
    label: { en: "Invoice", zh: "发票" },
    schema: {
      type: "object",
      properties: {
        vendor: { type: "string" },
        date: { type: "string" },
        total: { type: "number", minimum: 0 },
        currency: { type: "string", maxLength: 3 },
      },
      required: ["vendor", "total"],
      additionalProperties: false,
    },
  },
  caption: {
    label: { en: "Caption and tags", zh: "说明与标签" },
    schema: {
      type: "object",
      properties: {
        caption: { type: "string" },
        tags: { type: "array", items: { type: "string" }, maxItems: 5 },
        has_text: { type: "boolean" },
      },
      required: ["caption", "tags", "has_text"],
      additionalProperties: false,
    },
  },
};

/** JSON.parse that keeps integers beyond 2^53 exact (as BigInt), where the browser passes the source text. */
export function parseJson(text) {
  return JSON.parse(text, (key, value, context) =>
    typeof value === "number" && !Number.isSafeInteger(value) && /^-?\d+$/.test(context?.source ?? "")
      ? BigInt(context.source)
      : value,
  );
}

/** Indented JSON text of a value from parseJson (big integers written out in full). */
export function formatJson(value) {
  const exact = (key, item) =>
    typeof item === "bigint" ? (JSON.rawJSON ? JSON.rawJSON(item.toString()) : item.toString()) : item;
  return JSON.stringify(value, exact, 2);
}

function typeOf(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "bigint") return "integer";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

const same = (a, b) => formatJson(a) === formatJson(b);

function hasType(value, type) {
  const actual = typeOf(value);
  return actual === type || (type === "number" && actual === "integer");
}

/** Problems of `value` against `schema`, each "path: what is wrong"; empty when it validates. */
export function validate(value, schema, path = "$", problems = []) {
  if (schema === true || schema === undefined || schema === null) return problems;
  if (schema === false) {
    problems.push(`${path}: not allowed`);
    return problems;
  }
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((type) => hasType(value, type))) {
      problems.push(`${path}: expected ${types.join(" or ")}, got ${typeOf(value)}`);
      return problems;
    }
  }
  if (schema.enum && !schema.enum.some((option) => same(option, value))) {
    problems.push(`${path}: not one of ${JSON.stringify(schema.enum)}`);
  }
  if ("const" in schema && !same(schema.const, value)) {
    problems.push(`${path}: must be ${JSON.stringify(schema.const)}`);
  }
  if (typeof value === "number" || typeof value === "bigint") {
    if (schema.minimum !== undefined && value < schema.minimum) problems.push(`${path}: below ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) problems.push(`${path}: above ${schema.maximum}`);
  }
  if (typeof value === "string") {
    const length = [...value].length;
    if (schema.minLength !== undefined && length < schema.minLength) problems.push(`${path}: shorter than ${schema.minLength}`);
    if (schema.maxLength !== undefined && length > schema.maxLength) problems.push(`${path}: longer than ${schema.maxLength}`);
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) problems.push(`${path}: fewer than ${schema.minItems} items`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) problems.push(`${path}: more than ${schema.maxItems} items`);
    if (schema.items && typeof schema.items === "object") {
      value.forEach((item, index) => validate(item, schema.items, `${path}[${index}]`, problems));
    }
  }
  if (typeOf(value) === "object") {
    const properties = schema.properties || {};
    for (const name of schema.required || []) {
      if (!(name in value)) problems.push(`${path}: missing ${JSON.stringify(name)}`);
    }
    for (const [name, item] of Object.entries(value)) {
      if (name in properties) validate(item, properties[name], `${path}.${name}`, problems);
      else if (schema.additionalProperties === false) problems.push(`${path}: unexpected ${JSON.stringify(name)}`);
      else if (typeof schema.additionalProperties === "object") {
        validate(item, schema.additionalProperties, `${path}.${name}`, problems);
      }
    }
  }
  return problems;
}
