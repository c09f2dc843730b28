/** JSON schemas shared by the routes and the OpenAPI document. */

export const errorSchema = {
  $id: 'ChimeraError',
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string' }, message: { type: 'string' } },
    },
  },
} as const;

/** The decoding options a translation request may carry. */
export const optionProperties = {
  beam: { type: 'integer', minimum: 1, maximum: 16, description: 'beam width (1 = greedy)' },
  maxLength: { type: 'integer', minimum: 1, maximum: 4096, description: 'generated tokens at most' },
  sample: { type: 'boolean', description: 'sample instead of taking the most likely token' },
  temperature: { type: 'number', exclusiveMinimum: 0, maximum: 100 },
  topK: { type: 'integer', minimum: 0 },
  topP: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
  seed: { type: 'integer', minimum: 0, maximum: 4294967295 },
} as const;

export const translateBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    text: { type: 'string', minLength: 1, description: 'one text to translate' },
    texts: { type: 'array', minItems: 1, maxItems: 1024, items: { type: 'string', minLength: 1 }, description: 'texts to translate, answered in order' },
    ...optionProperties,
  },
  oneOf: [{ required: ['text'] }, { required: ['texts'] }],
} as const;

export const translationObject = {
  type: 'object',
  required: ['text', 'cached', 'tokens'],
  properties: {
    text: { type: 'string' },
    cached: { type: 'boolean', description: 'every sentence came from a cache tier' },
    tokens: { type: 'integer', description: 'generated tokens' },
  },
} as const;

export const translateReply = {
  type: 'object',
  required: ['translations', 'model', 'ms'],
  properties: {
    translations: { type: 'array', items: translationObject },
    model: { type: 'string' },
    ms: { type: 'number' },
  },
} as const;

export const streamBody = {
  type: 'object',
  additionalProperties: false,
  required: ['text'],
  properties: {
    text: { type: 'string', minLength: 1 },
    ...optionProperties,
    beam: { type: 'integer', minimum: 1, maximum: 1, description: 'streaming decides tokens one by one: 1 only' },
  },
} as const;

export const ltTranslateBody = {
  type: 'object',
  required: ['q', 'target'],
  properties: {
    q: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 1024 }] },
    source: { type: 'string', default: 'auto' },
    target: { type: 'string' },
    format: { type: 'string', default: 'text' },
    api_key: { type: 'string' },
    apiKey: { type: 'string' },
  },
} as const;

export const ltError = {
  type: 'object',
  required: ['error'],
  properties: { error: { type: 'string' } },
} as const;
