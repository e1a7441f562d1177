// Speculative decoding through the server (--spec mtp): greedy answers equal those of a server
// without drafts, streamed and not, several requests at once; /metrics counts drafts and accepts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, SKIP } from './lib.mjs';

let plain, spec;
before(async () => {
  if (SKIP) return;
  [plain, spec] = await Promise.all([
    startServer(['--alias', 'nano', '--parallel', '2']),
    startServer(['--alias', 'nano', '--parallel', '2', '--spec', 'mtp', '--draft-max', '4']),
  ]);
});
after(async () => {
  for (const s of [plain, spec]) if (s) assert.equal((await s.stop()).code, 0);
});

const PROMPTS = ['In the beginning', 'Who was the father of Isaac?', 'And the LORD said unto Moses'];

async function answer(srv, content, stream) {
  const req = { model: 'nano', messages: [{ role: 'user', content }], max_tokens: 40, temperature: 0,
                thinking: { type: 'disabled' } };
  if (!stream) return (await srv.client().chat.completions.create(req)).choices[0].message.content;
  let text = '';
  for await (const ch of await srv.client().chat.completions.create({ ...req, stream: true }))
    text += ch.choices[0]?.delta?.content ?? '';
  return text;
}

test('greedy with MTP drafts equals greedy without', { skip: SKIP }, async () => {
  for (const stream of [false, true]) {
    const want = await Promise.all(PROMPTS.map((p) => answer(plain, p, stream)));
    const got = await Promise.all(PROMPTS.map((p) => answer(spec, p, stream)));
    assert.deepEqual(got, want);
    assert.ok(want.every((t) => t.length > 0));
  }
});

test('/metrics reports the drafts', { skip: SKIP }, async () => {
  await answer(spec, 'In the beginning God created', false);
  const text = await (await fetch(`${spec.url}/metrics`)).text();
  const value = (name) => Number(text.match(new RegExp(`^${name} (\\S+)$`, 'm'))?.[1]);
  assert.ok(value('dsv4_spec_draft_tokens_total') > 0, text);
  assert.ok(value('dsv4_spec_accepted_tokens_total') > 0);
  assert.ok(value('dsv4_spec_acceptance_rate') > 0 && value('dsv4_spec_acceptance_rate') <= 1);
  const off = await (await fetch(`${plain.url}/metrics`)).text();
  assert.match(off, /^dsv4_spec_draft_tokens_total 0$/m);
});
