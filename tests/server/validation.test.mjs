// The same parameter gets the same answer on every dialect (chat completions, completions, responses,
// messages): n, logit_bias (implemented, and proved to steer greedy decoding), tool_choice shapes and
// history tool-call arguments that are not JSON.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, postJson, SKIP } from './lib.mjs';

let srv, url;
before(async () => {
  if (SKIP) return;
  srv = await startServer(['--alias', 'nano', '--ctx', '512']);
  url = srv.url;
});
after(async () => {
  if (!srv) return;
  const { code } = await srv.stop();
  assert.equal(code, 0);
});

const post = (path, body) => postJson(`${url}${path}`, body);
const user = [{ role: 'user', content: 'Who was Moses?' }];
// One minimal body per dialect; `extra` is merged in.
const DIALECTS = {
  '/v1/chat/completions': (extra) => ({ messages: user, max_tokens: 1, ...extra }),
  '/v1/completions': (extra) => ({ prompt: 'In the beginning', max_tokens: 1, ...extra }),
  '/v1/responses': (extra) => ({ input: 'Who was Moses?', max_output_tokens: 1, ...extra }),
  '/v1/messages': (extra) => ({ messages: user, max_tokens: 1, ...extra }),
};

// A 400 that names `field`: OpenAI routes in error.param, Anthropic's in the message.
function rejects(r, path, field) {
  assert.equal(r.status, 400, `${path} ${field}: ${r.status} ${r.text}`);
  if (path.startsWith('/v1/messages')) {
    assert.equal(r.json.type, 'error', r.text);
    assert.ok(r.json.error.message.includes(field), `${path}: message does not name ${field}: ${r.text}`);
  } else {
    assert.equal(r.json.error.param, field, `${path}: ${r.text}`);
  }
}

test('n other than 1 is a 400 on all four dialects; n = 1 is fine', { skip: SKIP }, async () => {
  for (const [path, body] of Object.entries(DIALECTS)) {
    for (const n of [2, 0]) rejects(await post(path, body({ n })), path, 'n');
    rejects(await post(path, body({ n: 'one' })), path, 'n');
    const ok = await post(path, body({ n: 1 }));
    assert.equal(ok.status, 200, `${path}: ${ok.text}`);
  }
});

test('logit_bias of the wrong shape is a 400 naming it, on every dialect', { skip: SKIP }, async () => {
  const cases = [
    [[1, 2], 'logit_bias'],
    ['x', 'logit_bias'],
    [{ abc: 1 }, 'logit_bias.abc'],
    [{ '-1': 1 }, 'logit_bias.-1'],
    [{ '1.5': 1 }, 'logit_bias.1.5'],
    [{ 999999999: 1 }, 'logit_bias.999999999'],
    [{ 5: 'high' }, 'logit_bias.5'],
    [{ 5: 101 }, 'logit_bias.5'],
    [{ 5: -100.5 }, 'logit_bias.5'],
  ];
  for (const [path, body] of Object.entries(DIALECTS))
    for (const [lb, field] of cases) rejects(await post(path, body({ logit_bias: lb })), path, field);
});

async function tokenize(text) {
  const r = await post('/tokenize', { content: text });
  assert.equal(r.status, 200, r.text);
  return r.json.tokens;
}

test('logit_bias steers greedy decoding: -100 bans the greedy token, +100 forces one', { skip: SKIP }, async () => {
  const routes = [
    ['/v1/completions', { prompt: 'In the beginning God created the', max_tokens: 1, temperature: 0 }, (j) => j.choices[0].text],
    ['/v1/chat/completions', { messages: user, thinking: { type: 'disabled' }, max_tokens: 1, temperature: 0 },
      (j) => j.choices[0].message.content],
  ];
  const [forced] = await tokenize(' Egypt');
  for (const [path, body, text] of routes) {
    const base = await post(path, body);
    assert.equal(base.status, 200, base.text);
    const first = await tokenize(text(base.json));
    assert.equal(first.length, 1, `${path}: the greedy token should round-trip: ${base.text}`);
    assert.notEqual(first[0], forced, `${path}: pick another token to force`);
    const banned = await post(path, { ...body, logit_bias: { [first[0]]: -100 } });
    assert.equal(banned.status, 200, banned.text);
    assert.notEqual(text(banned.json), text(base.json), `${path}: the banned token came back`);
    assert.notDeepEqual(await tokenize(text(banned.json)), first);
    // A small bias does not ban: the greedy choice stays.
    const nudged = await post(path, { ...body, logit_bias: { [first[0]]: -0.001 } });
    assert.equal(text(nudged.json), text(base.json));
    const pushed = await post(path, { ...body, logit_bias: { [forced]: 100 } });
    assert.equal(pushed.status, 200, pushed.text);
    assert.deepEqual(await tokenize(text(pushed.json)), [forced], `${path}: ${pushed.text}`);
  }
});

test('tool_choice shapes are checked on /v1/messages', { skip: SKIP }, async () => {
  const tools = [{ name: 'get_weather', input_schema: { type: 'object' } }];
  const count = (tool_choice) => post('/v1/messages/count_tokens', { messages: user, tools, tool_choice });
  const bad = [
    [{ a: 1 }, 'tool_choice.a'],
    [{}, 'tool_choice.type'],
    [{ type: 'function' }, 'tool_choice.type'],
    [{ type: 'tool' }, 'tool_choice.name'],
    [{ type: 'tool', name: 'nope' }, 'tool_choice'],
    [{ type: 'auto', name: 'get_weather' }, 'tool_choice.name'],
    [{ type: 'any', disable_parallel_tool_use: 'yes' }, 'tool_choice.disable_parallel_tool_use'],
    ['auto', 'tool_choice'],
  ];
  for (const [tc, field] of bad) rejects(await count(tc), '/v1/messages/count_tokens', field);
  rejects(await post('/v1/messages', { messages: user, max_tokens: 1, tools, tool_choice: { a: 1 } }), '/v1/messages', 'tool_choice.a');
  for (const tc of [{ type: 'auto' }, { type: 'any', disable_parallel_tool_use: true }, { type: 'none' },
    { type: 'tool', name: 'get_weather' }]) {
    const r = await count(tc);
    assert.equal(r.status, 200, `${JSON.stringify(tc)}: ${r.text}`);
  }
});

test('tool_choice shapes are checked on /v1/responses', { skip: SKIP }, async () => {
  const tools = [{ type: 'function', name: 'get_weather', parameters: { type: 'object' } },
    { type: 'function', name: 'get_time', parameters: { type: 'object' } }];
  const send = (tool_choice) => post('/v1/responses', { input: 'Weather?', tools, tool_choice, max_output_tokens: 1 });
  const bad = [
    [{ a: 1 }, 'tool_choice.type'],
    ['any', 'tool_choice'],
    [7, 'tool_choice'],
    [{ type: 'function' }, 'tool_choice.name'],
    [{ type: 'function', name: 'get_weather', x: 1 }, 'tool_choice.x'],
    [{ type: 'function', name: 'nope' }, 'tool_choice'],
    [{ type: 'web_search_preview' }, 'tool_choice.type'],
    [{ type: 'allowed_tools', mode: 'sometimes', tools: [] }, 'tool_choice.mode'],
    [{ type: 'allowed_tools', mode: 'auto', tools: [{ type: 'function' }] }, 'tool_choice.tools[0].name'],
  ];
  for (const [tc, field] of bad) rejects(await send(tc), '/v1/responses', field);
  for (const tc of ['auto', 'none', 'required', { type: 'function', name: 'get_time' },
    { type: 'allowed_tools', mode: 'auto', tools: [{ type: 'function', name: 'get_time' }] }]) {
    const r = await send(tc);
    assert.equal(r.status, 200, `${JSON.stringify(tc)}: ${r.text}`);
  }
  // The chat route already refused these; it still does.
  rejects(await post('/v1/chat/completions', { messages: user, max_tokens: 1, tool_choice: { a: 1 } }), '/v1/chat/completions',
    'tool_choice');
});

test('history tool-call arguments that are not a JSON object are a 400 naming the field', { skip: SKIP }, async () => {
  const chatBody = (args) => ({
    max_tokens: 1,
    messages: [user[0], { role: 'assistant', content: '', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: args } }] },
      { role: 'tool', tool_call_id: 'c1', content: 'ok' }],
  });
  const respBody = (args) => ({
    max_output_tokens: 1,
    input: [{ role: 'user', content: 'x' }, { type: 'function_call', call_id: 'c1', name: 'f', arguments: args },
      { type: 'function_call_output', call_id: 'c1', output: 'ok' }],
  });
  for (const args of ['{not json', '[1, 2]', '"text"', '\uFEFF{}']) {
    for (const path of ['/v1/chat/completions', '/v1/chat/render'])
      rejects(await post(path, chatBody(args)), path, 'messages[1].tool_calls[0].function.arguments');
    rejects(await post('/v1/responses', respBody(args)), '/v1/responses', 'input[1].arguments');
  }
  // Anthropic's tool_use input is an object, never text.
  const anth = { max_tokens: 1, messages: [user[0], { role: 'assistant', content: [{ type: 'tool_use', id: 't', name: 'f', input: '{}' }] }] };
  rejects(await post('/v1/messages', anth), '/v1/messages', 'messages[1].content[0].input');
  // Valid JSON objects (and an empty string, read as {}) render the same call on both OpenAI routes.
  const chat = await post('/v1/chat/render', chatBody('{"q": 1}'));
  assert.equal(chat.status, 200, chat.text);
  const empty = await post('/v1/chat/render', chatBody(''));
  assert.equal(empty.status, 200, empty.text);
  for (const path of ['/v1/chat/completions', '/v1/responses']) {
    const r = await post(path, path === '/v1/responses' ? respBody('{"q": 1}') : chatBody('{"q": 1}'));
    assert.equal(r.status, 200, `${path}: ${r.text}`);
  }
});
