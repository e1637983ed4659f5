/** What tools from-har accepts from the conversion agent, and how it edits the target's AGENTS.md. */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  checkProduced, GENERATED_MARK, markGenerated, mergeSection, pickOutputPaths, SECTION_BEGIN, SECTION_END, templateTools,
  unifiedDiff, withoutSection, writePlanned,
} from '../../src/har/agent-files.ts';
import type { HarError } from '../../src/har/redact.ts';

const base = mkdtempSync(join(tmpdir(), 'har-agent-files-'));
after(() => rmSync(base, { recursive: true, force: true }));

const file = (path: string, size = 10) => ({ path, type: 'file', size });
const refused = (pattern: RegExp) => (error: HarError) => error.code === 'UNSAFE_OUTPUT' && pattern.test(error.message);

test('only out/tools/<safe-name>.sh and out/AGENTS.section.md are taken; symlinks and odd names are refused', () => {
  assert.deepEqual(pickOutputPaths([file('out/tools/b.sh'), file('out/tools/a-1.sh'), file('out/AGENTS.section.md'), file('out/notes.txt'), { path: 'out/tools', type: 'directory', size: 0 }]),
    { tools: ['out/tools/a-1.sh', 'out/tools/b.sh'], section: 'out/AGENTS.section.md' });
  const section = file('out/AGENTS.section.md');
  for (const name of ['out/tools/../../x.sh', 'out/tools/sub/x.sh', 'out/tools/X.sh', 'out/tools/.hidden.sh', 'out/tools/run.py', 'out/tools/a b.sh']) {
    assert.throws(() => pickOutputPaths([file(name), section]), refused(/tools must be out\/tools\/<lowercase-name>\.sh/), name);
  }
  assert.throws(() => pickOutputPaths([{ path: 'out/tools/a.sh', type: 'symlink', size: 0 }, section]), refused(/is a symlink/));
  assert.throws(() => pickOutputPaths([file('out/tools/a.sh', 10_000_000), section]), refused(/larger than/));
  assert.throws(() => pickOutputPaths([section]), refused(/no script in out\/tools/));
  assert.throws(() => pickOutputPaths([file('out/tools/a.sh')]), refused(/no out\/AGENTS\.section\.md/));
});

test('content checks: placeholders, credentials (never repeated), hard-coded origin, no #!, clash with the template\'s own tool', () => {
  const ok = { tools: [{ name: 'a.sh', text: '#!/bin/bash\ncurl "$PRODUCT_API_URL/x"\n' }], section: '## A\n' };
  checkProduced(ok, ['s3cr3t-value-123'], ['acme.test'], ['acme-cli.sh']);
  const bad = (text: string, section = '## A\n') => ({ tools: [{ name: 'a.sh', text }], section });
  assert.throws(() => checkProduced(bad('#!/bin/bash\ncurl -H "Authorization: Bearer <redacted:authorization>"'), [], [], []), refused(/tools\/a\.sh contains a redaction placeholder/));
  assert.throws(() => checkProduced(bad('#!/bin/bash\n', 'token s3cr3t-value-123'), ['s3cr3t-value-123'], [], []),
    (error: HarError) => refused(/AGENTS\.section\.md contains 1 credential/)(error) && !error.message.includes('s3cr3t'));
  assert.throws(() => checkProduced(bad('#!/bin/bash\ncurl https://acme.test/x'), [], ['acme.test'], []), refused(/hard-codes acme\.test/));
  assert.throws(() => checkProduced(bad('curl "$PRODUCT_API_URL"'), [], [], []), refused(/does not start with #!/));
  assert.throws(() => checkProduced(bad('#!/bin/bash\n'), [], [], ['a.sh']), refused(/would replace the template's own tool/));
});

test('the section is appended once, replaced on a re-run, and can be taken out again', () => {
  const operator = '# Agent\n\nRules.\n';
  const once = mergeSection(operator, '## Tools v1\n');
  assert.equal(once, `# Agent\n\nRules.\n\n${SECTION_BEGIN}\n## Tools v1\n${SECTION_END}\n`);
  const twice = mergeSection(`${once}\nMore rules the operator added later.\n`, '## Tools v2\n');
  assert.equal(twice, `# Agent\n\nRules.\n\n${SECTION_BEGIN}\n## Tools v2\n${SECTION_END}\n\nMore rules the operator added later.\n`, 'what follows the section stays as the operator wrote it');
  assert.equal(twice.split(SECTION_BEGIN).length, 2);
  assert.equal(withoutSection(once), operator);
  assert.equal(mergeSection('', '## T'), `${SECTION_BEGIN}\n## T\n${SECTION_END}\n`);
});

test('generated scripts are marked after #!, and told apart from the operator\'s own tools', () => {
  assert.equal(markGenerated('#!/bin/bash\necho hi\n'), `#!/bin/bash\n${GENERATED_MARK}\necho hi\n`);
  assert.equal(markGenerated(markGenerated('#!/bin/bash\n')), `#!/bin/bash\n${GENERATED_MARK}\n`);
  const dir = mkdtempSync(join(base, 'template-'));
  mkdirSync(join(dir, 'tools'));
  writeFileSync(join(dir, 'tools/own.sh'), '#!/bin/bash\n');
  writeFileSync(join(dir, 'tools/gen.sh'), markGenerated('#!/bin/bash\n'));
  assert.deepEqual(templateTools(dir), { own: ['own.sh'], generated: ['gen.sh'] });
});

test('the diff shows new and changed files; writing sets each mode', async () => {
  const dir = mkdtempSync(join(base, 'template-'));
  writeFileSync(join(dir, 'AGENTS.md'), '# Agent\n');
  const planned = [{ path: 'tools/a.sh', text: '#!/bin/bash\n', mode: 0o755 }, { path: 'AGENTS.md', text: '# Agent\n\n## Tools\n', mode: 0o644 }];
  const diff = await unifiedDiff(dir, planned);
  assert.match(diff, /^diff --git a\/tools\/a\.sh b\/tools\/a\.sh\nnew file mode 100755\n--- \/dev\/null\n\+\+\+ b\/tools\/a\.sh\n@@ -0,0 \+1 @@\n\+#!\/bin\/bash\n/);
  assert.match(diff, /--- a\/AGENTS\.md\n\+\+\+ b\/AGENTS\.md\n@@ -1 \+1,3 @@\n # Agent\n\+\n\+## Tools\n$/);
  assert.equal(await unifiedDiff(dir, [{ path: 'AGENTS.md', text: '# Agent\n', mode: 0o644 }]), '', 'no change, no diff');
  writePlanned(dir, planned);
  assert.equal(statSync(join(dir, 'tools/a.sh')).mode & 0o777, 0o755);
  assert.equal(readFileSync(join(dir, 'AGENTS.md'), 'utf8'), '# Agent\n\n## Tools\n');
  chmodSync(join(dir, 'tools/a.sh'), 0o600);
  writePlanned(dir, planned);
  assert.equal(statSync(join(dir, 'tools/a.sh')).mode & 0o777, 0o755, 'a rewrite restores the mode');
});
