/** The README's configuration reference, generated from the schema (never written by hand). */
import { applianceJsonSchema } from './schema.js';

interface JsonSchemaNode {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  const?: unknown;
  properties?: Record<string, JsonSchemaNode>;
  items?: JsonSchemaNode;
  additionalProperties?: JsonSchemaNode | boolean;
  anyOf?: JsonSchemaNode[];
}

function typeOf(node: JsonSchemaNode): string {
  if (node.enum) return node.enum.map((v) => JSON.stringify(v)).join(' | ');
  if (node.const !== undefined) return JSON.stringify(node.const);
  if (node.anyOf) return node.anyOf.map(typeOf).join(' | ');
  if (node.type === 'array') return `list of ${node.items ? typeOf(node.items) : 'any'}`;
  if (node.type === 'object') return 'mapping';
  return Array.isArray(node.type) ? node.type.join(' | ') : (node.type ?? 'any');
}

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

export function configReferenceMarkdown(): string {
  const root = applianceJsonSchema() as JsonSchemaNode;
  const rows: string[] = ['| setting | type | default | meaning |', '| --- | --- | --- | --- |'];
  const walk = (node: JsonSchemaNode, path: string) => {
    for (const [name, child] of Object.entries(node.properties ?? {})) {
      const full = path ? `${path}.${name}` : name;
      const def =
        child.default === undefined || (typeof child.default === 'object' && child.type === 'object')
          ? ''
          : `\`${JSON.stringify(child.default)}\``;
      rows.push(`| \`${full}\` | ${cell(typeOf(child))} | ${def} | ${cell(child.description ?? '')} |`);
      if (child.type === 'object' && child.properties) walk(child, full);
    }
  };
  walk(root, '');
  return rows.join('\n');
}
