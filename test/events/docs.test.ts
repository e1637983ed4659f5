/**
 * docs/events.md documents exactly the typed event map of src/core/events.ts:
 * every event type with its fields, nothing extra; the seed's contract fields
 * are in the type; payload fields never clash with the frame envelope.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';
import { storedEventTypes } from '../../src/core/events.ts';
import { ROOT } from '../support/harness.ts';

/** Event type → its payload's field names, read from the EventPayloads interface. */
function typedMap(): Map<string, string[]> {
  const file = join(ROOT, 'src/core/events.ts');
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const map = new Map<string, string[]>();
  source.forEachChild((node) => {
    if (!ts.isInterfaceDeclaration(node) || node.name.text !== 'EventPayloads') return;
    for (const member of node.members) {
      assert.ok(ts.isPropertySignature(member) && member.type, `EventPayloads member ${member.getText()}`);
      const type = member.type;
      let fields: string[];
      if (ts.isTypeLiteralNode(type)) {
        fields = type.members.map((m) => (m.name as ts.Identifier).text);
      } else {
        assert.equal(type.getText(), 'Record<string, never>', `payload of ${member.name.getText()} must be a type literal or empty`);
        fields = [];
      }
      map.set((member.name as ts.Identifier).text, fields);
    }
  });
  assert.ok(map.size > 0, 'EventPayloads found');
  return map;
}

/** Rows of the first table under a `## heading`: first cell's name → backticked names of the second cell. */
function docTable(markdown: string, heading: string): Map<string, string[]> {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `docs/events.md has a "## ${heading}" section`);
  const section = markdown.slice(start + heading.length + 5).split('\n## ')[0]!;
  const rows = new Map<string, string[]>();
  for (const line of section.split('\n')) {
    const match = /^\| `([a-z_]+)` \|([^|]*)\|/.exec(line);
    if (!match) continue;
    assert.ok(!rows.has(match[1]!), `${match[1]} is documented once`);
    rows.set(match[1]!, [...match[2]!.matchAll(/`([A-Za-z]+)`/g)].map((m) => m[1]!));
  }
  return rows;
}

const docs = readFileSync(join(ROOT, 'docs/events.md'), 'utf8');

test('every event type is documented with exactly its fields, and nothing else is', () => {
  const typed = typedMap();
  const documented = docTable(docs, 'Events');
  assert.deepEqual([...documented.keys()].sort(), [...typed.keys()].sort(), 'documented event types = EventPayloads keys');
  for (const [type, fields] of typed) {
    assert.deepEqual([...documented.get(type)!].sort(), [...fields].sort(), `fields of ${type}`);
  }
});

test('every type of the map is stored, in the documented order', () => {
  const typed = typedMap();
  assert.deepEqual([...storedEventTypes].sort(), [...typed.keys()].sort());
  assert.deepEqual([...docTable(docs, 'Events').keys()], [...storedEventTypes], 'the table follows storedEventTypes');
});

test("the seed's names and fields are all there", () => {
  const typed = typedMap();
  const seed: Record<string, string[]> = {
    task_start: ['taskId', 'sessionId'],
    init: ['sessionId', 'model', 'tools'],
    thinking: ['text'],
    text: ['text'],
    tool_start: ['tool', 'input'],
    tool_end: ['result'],
    task_complete: ['taskId', 'output', 'cost', 'duration', 'tools'],
    abort: ['taskId'],
  };
  for (const [type, fields] of Object.entries(seed)) {
    for (const field of fields) assert.ok(typed.get(type)?.includes(field), `${type}.${field}`);
  }
  const frames = docTable(docs, 'Transport frames');
  for (const field of ['busy', 'turns']) assert.ok(frames.get('connected')?.includes(field), `connected.${field}`);
  assert.deepEqual(frames.get('gap'), ['fromSeq', 'toSeq']);
  for (const frame of frames.keys()) assert.ok(!typed.has(frame), `${frame} is a transport frame, not a stored event`);
});

test('payload fields never overwrite the envelope (type, seq, ts; taskId only as the same task id)', () => {
  for (const [type, fields] of typedMap()) {
    for (const reserved of ['type', 'seq', 'ts']) assert.ok(!fields.includes(reserved), `${type} has a field named ${reserved}`);
  }
});
