// Anthropic Messages route, driven with curl: plain, streaming event sequence, thinking blocks, tool
// history, count_tokens, errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, curl, parseSse, postJson, MARKUP, SKIP } from './lib.mjs';

let srv, url;
before(async () => {
  if (SKIP) return;
  srv = await startServer(['--alias', 'nano', '--keep-alive', '0.05']);
  url = `${srv.url}/v1/messages`;
});
after(async () => {
  if (!srv) return;
  const { code } = await srv.stop();
  assert.equal(code, 0);
});

const H = ['anthropic-version: 2023-06-01'];

test('messages: plain', { skip: SKIP }, async () => {
  const r = await curl(url, {
    model: 'nano', max_tokens: 8, system: 'You are terse.', thinking: { type: 'disabled' },
    messages: [{ role: 'user', content: 'Who begat Seth?' }],
  }, H);
  assert.equal(r.status, 200, r.body);
  const m = JSON.parse(r.body);
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.match(m.id, /^msg_/);
  assert.ok(['end_turn', 'max_tokens', 'stop_sequence'].includes(m.stop_reason));
  assert.equal(m.content[0].type, 'text');
  assert.ok(!MARKUP.test(m.content[0].text));
  assert.ok(m.usage.input_tokens + m.usage.cache_read_input_tokens > 0);
  assert.ok(m.usage.output_tokens >= 1 && m.usage.output_tokens <= 8);
});

test('messages: streaming event sequence', { skip: SKIP }, async () => {
  const r = await curl(url, {
    model: 'nano', max_tokens: 12, stream: true, thinking: { type: 'enabled', budget_tokens: 1024 },
    messages: [{ role: 'user', content: [{ type: 'text', text: 'Who begat Seth?' }] }],
  }, H);
  assert.equal(r.status, 200, r.body);
  const evs = parseSse(r.body).filter((e) => e.event);
  const types = evs.map((e) => e.event);
  for (const e of evs) assert.equal(e.data.type, e.event, 'event name matches data.type');
  assert.equal(types[0], 'message_start');
  assert.equal(types.at(-1), 'message_stop');
  assert.equal(types.at(-2), 'message_delta');
  // Blocks open, take deltas and close in order, with consecutive indexes.
  let open = null, next = 0;
  for (const e of evs) {
    if (e.event === 'content_block_start') {
      assert.equal(open, null);
      assert.equal(e.data.index, next);
      open = e.data;
    } else if (e.event === 'content_block_delta') {
      assert.equal(e.data.index, open.index);
      const want = { thinking: ['thinking_delta', 'signature_delta'], text: ['text_delta'], tool_use: ['input_json_delta'] };
      assert.ok(want[open.content_block.type].includes(e.data.delta.type));
    } else if (e.event === 'content_block_stop') {
      assert.equal(e.data.index, open.index);
      open = null;
      next++;
    }
  }
  assert.equal(open, null);
  assert.ok(next >= 1);
  // Thinking mode: the first block is the reasoning.
  assert.equal(evs.find((e) => e.event === 'content_block_start').data.content_block.type, 'thinking');
  const md = evs.at(-2).data;
  assert.ok(['max_tokens', 'end_turn'].includes(md.delta.stop_reason));
  assert.ok(md.usage.output_tokens >= 1 && md.usage.output_tokens <= 12);
});

test('messages: tool_use / tool_result history renders like the OpenAI form', { skip: SKIP }, async () => {
  const tools = [{ name: 'get_time', description: 'Current time', input_schema: { type: 'object', properties: { tz: { type: 'string' } } } }];
  const anthropic = {
    model: 'nano', max_tokens: 4, system: 'Use tools.', tools, thinking: { type: 'enabled' },
    messages: [
      { role: 'user', content: 'Time in Tokyo?' },
      { role: 'assistant', content: [
        { type: 'thinking', thinking: 'I should call the tool.', signature: '' },
        { type: 'tool_use', id: 'toolu_1', name: 'get_time', input: { tz: 'Asia/Tokyo' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: '10:00' }] },
    ],
  };
  const openai = {
    model: 'nano', thinking: { type: 'enabled' },
    tools: [{ type: 'function', function: { name: 'get_time', description: 'Current time', parameters: tools[0].input_schema } }],
    messages: [
      { role: 'system', content: 'Use tools.' },
      { role: 'user', content: 'Time in Tokyo?' },
      { role: 'assistant', content: '', reasoning_content: 'I should call the tool.',
        tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'get_time', arguments: '{"tz": "Asia/Tokyo"}' } }] },
      { role: 'tool', tool_call_id: 'toolu_1', content: '10:00' },
    ],
  };
  const rendered = (await postJson(`${srv.url}/v1/chat/render`, openai)).json;
  assert.match(rendered.prompt, /<｜DSML｜invoke name="get_time">/);
  assert.match(rendered.prompt, /<tool_result>10:00<\/tool_result><｜Assistant｜><think>$/);
  const count = await curl(`${url}/count_tokens`, anthropic, H);
  assert.equal(count.status, 200, count.body);
  assert.equal(JSON.parse(count.body).input_tokens, rendered.num_tokens);
  const r = await curl(url, anthropic, H);
  assert.equal(r.status, 200, r.body);
  const m = JSON.parse(r.body);
  assert.equal(m.usage.input_tokens + m.usage.cache_read_input_tokens, rendered.num_tokens);
});

test('messages: keep-alives while waiting', { skip: SKIP }, async () => {
  // A long prompt: prefill takes several of the 50 ms keep-alive intervals.
  const long = 'And the earth was without form, and void; and darkness was upon the face of the deep. '.repeat(60);
  const r = await curl(url, { model: 'nano', max_tokens: 2, stream: true, messages: [{ role: 'user', content: long }] }, H);
  const evs = parseSse(r.body);
  // Before message_start (written once the prefix-cache hit is known) keep-alives are SSE comments.
  const start = evs.findIndex((e) => e.event === 'message_start');
  assert.ok(evs.slice(0, start).every((e) => e.comment === 'keep-alive'));
  const waits = evs.filter((e) => e.event === 'ping' || e.comment === 'keep-alive').length;
  console.log(`keep-alives during prefill: ${waits}`);
  assert.ok(evs.some((e) => e.event === 'message_stop'));
});

test('messages: errors', { skip: SKIP }, async () => {
  const r = await curl(url, { model: 'nano', messages: [{ role: 'user', content: 'x' }] }, H);
  assert.equal(r.status, 400);
  const e = JSON.parse(r.body);
  assert.equal(e.type, 'error');
  assert.equal(e.error.type, 'invalid_request_error');
  assert.match(e.error.message, /max_tokens/);
  const r2 = await curl(url, { model: 'nano', max_tokens: 1, messages: [{ role: 'user', content: [{ type: 'image', source: {} }] }] }, H);
  assert.equal(r2.status, 400);
  assert.equal(JSON.parse(r2.body).type, 'error');
});
