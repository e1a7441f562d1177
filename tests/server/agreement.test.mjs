// Answers agree with what was asked, through the official clients: `ignore_eos` runs to max_tokens in
// thinking mode too, on every chat route.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, postJson, parseSse, sleep, SKIP } from './lib.mjs';

let srv, client, anth;
before(async () => {
  if (SKIP) return;
  // One sequence at a time and quick keep-alives: a request queued behind another gets keep-alives
  // before its first token.
  srv = await startServer(['--alias', 'nano', '--parallel', '1', '--keep-alive', '0.05']);
  client = srv.client();
  anth = srv.anthropic();
});
after(async () => {
  if (!srv) return;
  const { code } = await srv.stop();
  assert.equal(code, 0);
});

const ask = (content) => [{ role: 'user', content }];

test('ignore_eos runs to max_tokens, thinking or not, on every chat route', { skip: SKIP }, async () => {
  const N = 300;
  for (const thinking of ['enabled', 'disabled']) {
    for (const seed of [1, 2, 3]) {
      const r = await client.chat.completions.create({
        model: 'nano', messages: ask('Who was Moses?'), max_tokens: N, ignore_eos: true, temperature: 1, seed, thinking: { type: thinking },
      });
      assert.equal(r.choices[0].finish_reason, 'length', `${thinking} seed ${seed}`);
      assert.equal(r.usage.completion_tokens, N);
    }
  }
  const m = await anth.messages.create({ model: 'nano', max_tokens: N, messages: ask('Who was Moses?'), ignore_eos: true, temperature: 1, seed: 4 });
  assert.equal(m.stop_reason, 'max_tokens');
  assert.equal(m.usage.output_tokens, N);
  const r = await client.responses.create({ model: 'nano', input: 'Who was Moses?', max_output_tokens: N, ignore_eos: true, seed: 5 });
  assert.equal(r.status, 'incomplete');
  assert.equal(r.usage.output_tokens, N);
});
