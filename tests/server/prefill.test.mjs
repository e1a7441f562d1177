// Assistant prefill: a conversation ending in an assistant message continues that message, on
// /v1/messages (Anthropic's prefill, through @anthropic-ai/sdk), /v1/chat/completions (as llama.cpp;
// vLLM's continue_final_message and DeepSeek's prefix read too) and /v1/responses. The prompt leaves the
// assistant turn open, and the greedy answer is exactly the raw continuation of that prompt.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startServer, postJson, MARKUP, SKIP } from './lib.mjs';

let srv, client, anth;
before(async () => {
  if (SKIP) return;
  srv = await startServer(['--alias', 'nano', '--ctx', '2048']);
  client = srv.client();
  anth = srv.anthropic();
});
after(async () => {
  if (!srv) return;
  const { code } = await srv.stop();
  assert.equal(code, 0);
});

const PREFILL = 'And God said, Let there be';
const convo = [{ role: 'user', content: 'What did God say on the first day?' }, { role: 'assistant', content: PREFILL }];
const N = 10;
const render = (body) => postJson(`${srv.url}/v1/chat/render`, body);

// What the model writes after the rendered prompt, greedily, through the raw route.
async function rawContinuation(tokens) {
  const r = await client.completions.create({ model: 'nano', prompt: tokens, max_tokens: N, temperature: 0 });
  return r.choices[0].text;
}

test('render: the prompt ends in the prefill text, the turn left open', { skip: SKIP }, async () => {
  for (const [thinking, open] of [[true, '<think></think>'], [false, '</think>']]) {
    const r = await render({ messages: convo, chat_template_kwargs: { thinking } });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.prompt.endsWith(`<｜Assistant｜>${open}${PREFILL}`), r.json.prompt);
    assert.ok(!r.json.prompt.includes('<｜end▁of▁sentence｜>'), 'no end of turn');
  }
  // Reasoning in the prefill is closed before its text.
  const withReasoning = [convo[0], { role: 'assistant', reasoning_content: 'Light came first.', content: PREFILL }];
  const r = await render({ messages: withReasoning });
  assert.ok(r.json.prompt.endsWith(`<think>Light came first.</think>${PREFILL}`), r.json.prompt);
});

test('messages (Anthropic SDK): the answer continues the prefill, streamed or not', { skip: SKIP }, async () => {
  const { json } = await render({ messages: convo });
  const want = await rawContinuation(json.tokens);
  assert.ok(want.length > 0);
  const body = { model: 'nano', max_tokens: N, temperature: 0, messages: convo };
  const m = await anth.messages.create(body);
  assert.deepEqual(m.content.map((b) => b.type), ['text'], 'prefill: no thinking block, the reasoning is closed');
  assert.equal(m.content[0].text, want);
  assert.ok(!MARKUP.test(m.content[0].text));
  assert.equal(m.stop_reason, 'max_tokens');
  assert.equal(m.usage.input_tokens + m.usage.cache_read_input_tokens, json.num_tokens);
  const streamed = await anth.messages.stream(body).finalMessage();
  assert.equal(streamed.content.map((b) => b.text).join(''), want);
  // Text blocks in the prefill, and count_tokens, see the same prompt.
  const blocks = [convo[0], { role: 'assistant', content: [{ type: 'text', text: PREFILL }] }];
  assert.equal((await anth.messages.create({ ...body, messages: blocks })).content[0].text, want);
  const count = await anth.messages.countTokens({ model: 'nano', messages: convo });
  assert.equal(count.input_tokens, json.num_tokens);
});

test('messages: a prefill with thinking blocks closes the reasoning and continues the text', { skip: SKIP }, async () => {
  const messages = [convo[0], {
    role: 'assistant',
    content: [{ type: 'thinking', thinking: 'Light came first.', signature: '' }, { type: 'text', text: PREFILL }],
  }];
  const { json } = await render({ messages: [convo[0], { role: 'assistant', reasoning_content: 'Light came first.', content: PREFILL }] });
  const m = await anth.messages.create({ model: 'nano', max_tokens: N, temperature: 0, messages, thinking: { type: 'enabled', budget_tokens: 1024 } });
  assert.deepEqual(m.content.map((b) => b.type), ['text']);
  assert.equal(m.content[0].text, await rawContinuation(json.tokens));
});

test('messages: a final assistant message with tool_use is a 400; an empty one is a new answer', { skip: SKIP }, async () => {
  const tools = [{ name: 'lookup', input_schema: { type: 'object', properties: {} } }];
  const err = await anth.messages.create({
    model: 'nano', max_tokens: 4, tools,
    messages: [convo[0], { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'lookup', input: {} }] }],
  }).catch((e) => e);
  assert.ok(err instanceof Anthropic.BadRequestError, String(err));
  assert.match(err.message, /tool calls/);
  // An empty final assistant message renders as if it were not there.
  const bare = await render({ messages: [convo[0]] });
  const empty = await render({ messages: [convo[0], { role: 'assistant', content: '' }] });
  assert.equal(empty.json.prompt, bare.json.prompt);
  const m = await anth.messages.create({ model: 'nano', max_tokens: 4, messages: [convo[0], { role: 'assistant', content: '' }] });
  assert.equal(m.type, 'message');
});

test('chat completions: the final assistant message is continued; continue_final_message and prefix agree', { skip: SKIP }, async () => {
  const { json } = await render({ messages: convo });
  const want = await rawContinuation(json.tokens);
  const ask = (extra = {}, messages = convo) =>
    client.chat.completions.create({ model: 'nano', messages, max_tokens: N, temperature: 0, ...extra });
  const plain = await ask();
  assert.equal(plain.choices[0].message.content, want);
  assert.equal(plain.choices[0].message.reasoning_content, undefined, 'no reasoning: it is closed in the prefill');
  assert.equal((await ask({ continue_final_message: true, add_generation_prompt: false })).choices[0].message.content, want);
  const prefixed = [convo[0], { ...convo[1], prefix: true }];
  assert.equal((await ask({}, prefixed)).choices[0].message.content, want);
  let text = '';
  for await (const ch of await ask({ stream: true })) text += ch.choices[0]?.delta?.content ?? '';
  assert.equal(text, want);
});

test('chat completions: continue_final_message that contradicts the conversation is a 400', { skip: SKIP }, async () => {
  const bad = async (body, re) => {
    const e = await client.chat.completions.create({ model: 'nano', max_tokens: 2, ...body }).catch((x) => x);
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal(e.param, 'continue_final_message');
    assert.match(e.message, re);
  };
  await bad({ messages: [convo[0]], continue_final_message: true }, /not an assistant message/);
  await bad({ messages: convo, continue_final_message: false }, /is an assistant message/);
  // Rendering a closed conversation is fine: the final turn ends as the encoder ends it.
  const closed = await render({ messages: convo, continue_final_message: false });
  assert.ok(closed.json.prompt.endsWith(`${PREFILL}<｜end▁of▁sentence｜>`), closed.json.prompt);
  const calls = [convo[0], { role: 'assistant', content: '', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }] }];
  const e = await client.chat.completions.create({ model: 'nano', max_tokens: 2, messages: calls }).catch((x) => x);
  assert.ok(e instanceof OpenAI.BadRequestError);
  assert.equal(e.param, 'messages');
});

test('responses: a final assistant message is continued too', { skip: SKIP }, async () => {
  const { json } = await render({ messages: convo });
  const r = await client.responses.create({
    model: 'nano', max_output_tokens: N, temperature: 0,
    input: [{ role: 'user', content: convo[0].content }, { role: 'assistant', content: PREFILL }],
  });
  assert.deepEqual(r.output.map((o) => o.type), ['message']);
  assert.equal(r.output_text, await rawContinuation(json.tokens));
});
