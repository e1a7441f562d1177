// The disk prefix cache across a restart: the second server finds the first one's snapshot of the
// prompt, reports it in usage (OpenAI and Anthropic spellings) and answers exactly as a cold server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, SKIP } from './lib.mjs';

const PROMPT = 'And Adam lived an hundred and thirty years, and begat a son in his own likeness. '.repeat(12) +
  'Who was the son of Adam?';

async function ask(args) {
  const srv = await startServer(['--alias', 'nano', ...args]);
  try {
    const t0 = performance.now();
    const r = await srv.client().chat.completions.create({
      model: 'nano', messages: [{ role: 'user', content: PROMPT }], max_tokens: 12, temperature: 0,
      thinking: { type: 'disabled' },
    });
    const seconds = (performance.now() - t0) / 1000;
    const a = await srv.anthropic().messages.create({
      model: 'nano', max_tokens: 4, temperature: 0, messages: [{ role: 'user', content: PROMPT + ' Again.' }],
    });
    return { r, a, seconds };
  } finally {
    const { code } = await srv.stop();  // a clean shutdown writes what is queued
    assert.equal(code, 0);
  }
}

test('disk prefix cache survives a restart', { skip: SKIP }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dsv4-disk-cache-'));
  try {
    const cold = await ask(['--cache-dir', 'off']);
    const first = await ask(['--cache-dir', dir]);
    assert.equal(first.r.usage.prompt_tokens_details.cached_tokens, 0);
    const second = await ask(['--cache-dir', dir]);
    const cached = second.r.usage.prompt_tokens_details.cached_tokens;
    assert.ok(cached > 0, 'the restarted server reuses the saved prefix');
    assert.ok(cached >= second.r.usage.prompt_tokens - 1);
    assert.equal(second.r.choices[0].message.content, cold.r.choices[0].message.content);
    assert.equal(first.r.choices[0].message.content, cold.r.choices[0].message.content);
    assert.ok(second.a.usage.cache_read_input_tokens > 0, 'Anthropic usage reports it too');
    console.log(`prompt ${second.r.usage.prompt_tokens} tokens: ${first.seconds.toFixed(3)} s cold, ` +
                `${second.seconds.toFixed(3)} s with ${cached} tokens from disk`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
