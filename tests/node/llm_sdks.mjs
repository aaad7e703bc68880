// The official OpenAI and Anthropic SDKs against the LLM gateway at
// TOLLGATE_BASE (http://host:port; the OpenAI SDK gets TOLLGATE_BASE/v1,
// the Anthropic SDK TOLLGATE_BASE, as their users configure them), with
// TOLLGATE_KEY as their API key, OPENAI_MODEL, ANTHROPIC_MODEL and
// EMBEDDING_MODEL (default text-embedding-3-small).
//
// One call after the other, in this order: OpenAI chat completion, OpenAI
// chat completion streamed with usage, OpenAI embeddings, Anthropic
// message, Anthropic message streamed, then the OpenAI and the Anthropic
// SDK with a key that is not one. No retries, so each call is one request.
// Prints one REPORT line with what the SDKs saw: texts, usages, the
// x-tollgate-request-id header, the errors' classes and statuses. A call
// that fails is reported as its error, and the others still run.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';

const base = process.env.TOLLGATE_BASE;
const key = process.env.TOLLGATE_KEY;
const openaiModel = process.env.OPENAI_MODEL;
const anthropicModel = process.env.ANTHROPIC_MODEL;
const embeddingModel = process.env.EMBEDDING_MODEL ?? 'text-embedding-3-small';
const BAD_KEY = 'tg_live_this_is_not_a_key';

// authToken: null, so that an ANTHROPIC_AUTH_TOKEN in the environment
// cannot add a second credential.
const openaiClient = (apiKey) => new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, timeout: 30_000 });
const anthropicClient = (apiKey) =>
  new Anthropic({ baseURL: base, apiKey, authToken: null, maxRetries: 0, timeout: 30_000 });
const openai = openaiClient(key);
const anthropic = anthropicClient(key);

const PROMPT = [{ role: 'user', content: 'Say hello.' }];
const requestId = (response) => response.headers.get('x-tollgate-request-id');

/** An error as the report shows it: the SDK's class, status and body. */
function described(error) {
  return {
    className: error?.constructor?.name ?? typeof error,
    status: error?.status ?? null,
    type: error?.type ?? error?.error?.error?.type ?? null,
    code: error?.code ?? null,
    message: String(error?.message ?? error),
  };
}

/** Runs one call; its result, or `{ error }` when it threw. */
async function step(run) {
  try {
    return await run();
  } catch (error) {
    return { error: described(error) };
  }
}

/** The call must fail: the error and which SDK classes it is. */
async function refused(run, classes) {
  try {
    const answer = await run();
    return { thrown: false, answer };
  } catch (error) {
    const is = Object.fromEntries(Object.entries(classes).map(([name, cls]) => [name, error instanceof cls]));
    return { thrown: true, ...described(error), is };
  }
}

const report = {};

report.openaiChat = await step(async () => {
  const { data, response } = await openai.chat.completions
    .create({ model: openaiModel, messages: PROMPT, max_completion_tokens: 64 })
    .withResponse();
  return {
    status: response.status,
    requestId: requestId(response),
    model: data.model,
    text: data.choices[0]?.message?.content ?? null,
    finishReason: data.choices[0]?.finish_reason ?? null,
    usage: data.usage ?? null,
  };
});

report.openaiStream = await step(async () => {
  const { data: stream, response } = await openai.chat.completions
    .create({
      model: openaiModel,
      messages: PROMPT,
      max_completion_tokens: 64,
      stream: true,
      stream_options: { include_usage: true },
    })
    .withResponse();
  let text = '';
  let chunks = 0;
  let usage = null;
  let usageChunkChoices = null;
  let finishReason = null;
  for await (const chunk of stream) {
    chunks += 1;
    for (const choice of chunk.choices) {
      text += choice.delta?.content ?? '';
      finishReason = choice.finish_reason ?? finishReason;
    }
    if (chunk.usage) {
      usage = chunk.usage;
      usageChunkChoices = chunk.choices.length;
    }
  }
  return {
    status: response.status,
    requestId: requestId(response),
    contentType: response.headers.get('content-type'),
    text,
    chunks,
    finishReason,
    usage,
    usageChunkChoices,
  };
});

report.embeddings = await step(async () => {
  const { data, response } = await openai.embeddings
    .create({ model: embeddingModel, input: ['first text', 'second text'] })
    .withResponse();
  return {
    status: response.status,
    requestId: requestId(response),
    model: data.model,
    count: data.data.length,
    dimensions: data.data[0]?.embedding?.length ?? null,
    // The SDK asked for base64 and decoded it into numbers.
    first: Array.from(data.data[0]?.embedding ?? []).slice(0, 2),
    usage: data.usage ?? null,
  };
});

report.anthropicMessage = await step(async () => {
  const { data, response } = await anthropic.messages
    .create({ model: anthropicModel, max_tokens: 64, messages: PROMPT })
    .withResponse();
  return {
    status: response.status,
    requestId: requestId(response),
    model: data.model,
    text: data.content
      .filter((block) => block.type === 'text')
      .map((block) => block.text)
      .join(''),
    stopReason: data.stop_reason,
    usage: data.usage ?? null,
  };
});

report.anthropicStream = await step(async () => {
  const stream = anthropic.messages.stream({ model: anthropicModel, max_tokens: 64, messages: PROMPT });
  // Listeners before anything arrives, so that no event is missed.
  let text = '';
  const events = [];
  stream.on('text', (delta) => {
    text += delta;
  });
  stream.on('streamEvent', (event) => {
    events.push(event.type);
  });
  const { response } = await stream.withResponse();
  const final = await stream.finalMessage();
  return {
    status: response.status,
    requestId: requestId(response),
    contentType: response.headers.get('content-type'),
    model: final.model,
    text,
    events,
    stopReason: final.stop_reason,
    usage: final.usage ?? null,
  };
});

report.openaiBadKey = await refused(
  () => openaiClient(BAD_KEY).chat.completions.create({ model: openaiModel, messages: PROMPT }),
  { AuthenticationError: OpenAI.AuthenticationError, APIError: OpenAI.APIError },
);

report.anthropicBadKey = await refused(
  () => anthropicClient(BAD_KEY).messages.create({ model: anthropicModel, max_tokens: 64, messages: PROMPT }),
  { AuthenticationError: Anthropic.AuthenticationError, APIError: Anthropic.APIError },
);

console.log(`REPORT ${JSON.stringify(report)}`);
