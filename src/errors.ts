/**
 * Every error spanserve reports, with a stable code, an HTTP status and OpenAI's error type.
 * Processes pass the code across ZeroMQ; the server maps it to HTTP in one place (toHttpError).
 */
export const ERRORS = {
  SPANSERVE_ERR_INVALID_REQUEST: { status: 400, type: 'invalid_request_error', message: 'Invalid request' },
  SPANSERVE_ERR_CONTEXT_LENGTH: { status: 400, type: 'invalid_request_error', message: "Prompt and max_tokens exceed the model's context length" },
  SPANSERVE_ERR_CONSTRAINT_TOO_COMPLEX: { status: 400, type: 'invalid_request_error', message: 'The output constraint takes longer than --grammar-compile-timeout to compile' },
  SPANSERVE_ERR_TOKEN_ID: { status: 400, type: 'invalid_request_error', message: 'Token id outside the vocabulary' },
  SPANSERVE_ERR_UNAUTHORIZED: { status: 401, type: 'authentication_error', message: 'Incorrect API key provided' },
  SPANSERVE_ERR_MODEL_NOT_FOUND: { status: 404, type: 'invalid_request_error', message: 'The model does not exist' },
  SPANSERVE_ERR_NOT_FOUND: { status: 404, type: 'invalid_request_error', message: 'Unknown route' },
  SPANSERVE_ERR_RESPONSE_NOT_FOUND: { status: 404, type: 'invalid_request_error', message: 'No stored response with this id' },
  SPANSERVE_ERR_METHOD: { status: 405, type: 'invalid_request_error', message: 'Method not allowed' },
  SPANSERVE_ERR_BODY_TOO_LARGE: { status: 413, type: 'invalid_request_error', message: 'Request body too large' },
  SPANSERVE_ERR_MEDIA_TYPE: { status: 415, type: 'invalid_request_error', message: 'Unsupported content type' },
  SPANSERVE_ERR_VALIDATION: { status: 400, type: 'invalid_request_error', message: 'Request body does not match the schema' },
  SPANSERVE_ERR_QUEUE_FULL: { status: 429, type: 'rate_limit_error', message: 'The server is at capacity; retry later' },
  SPANSERVE_ERR_TIMEOUT: { status: 504, type: 'timeout_error', message: 'The request ran longer than --request-timeout' },
  SPANSERVE_ERR_REQUEST_TIMEOUT: { status: 408, type: 'invalid_request_error', message: 'The request headers or body did not arrive within --headers-timeout / --body-timeout' },
  SPANSERVE_ERR_HEADERS_TOO_LARGE: { status: 431, type: 'invalid_request_error', message: 'Request headers too large or too many' },
  SPANSERVE_ERR_BAD_HTTP: { status: 400, type: 'invalid_request_error', message: 'Malformed HTTP request' },
  SPANSERVE_ERR_TOO_MANY_CONNECTIONS: { status: 429, type: 'rate_limit_error', message: 'Too many open connections from this client' },
  SPANSERVE_ERR_SLOW_READER: { status: 400, type: 'invalid_request_error', message: 'The client read the stream too slowly' },
  SPANSERVE_ERR_INTERNAL: { status: 500, type: 'server_error', message: 'Internal error' },
  SPANSERVE_ERR_POISON_REQUEST: { status: 500, type: 'server_error', message: 'The request was running when a process crashed or hung, twice; it is not resumed again' },
  SPANSERVE_ERR_UNAVAILABLE: { status: 503, type: 'server_error', message: 'The server is not ready or a process failed' },
  SPANSERVE_ERR_SHUTTING_DOWN: { status: 503, type: 'server_error', message: 'The server is shutting down' },
  SPANSERVE_ERR_MODEL_INVALID: { status: 500, type: 'server_error', message: 'The model directory is not usable' },
  SPANSERVE_ERR_CONFIG: { status: 500, type: 'server_error', message: 'Invalid configuration' },
} as const

export type ErrorCode = keyof typeof ERRORS

export class SpanserveError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly type: string
  /** The request field at fault, as OpenAI's `param`. */
  readonly param: string | null

  constructor(code: ErrorCode, message?: string, param: string | null = null) {
    const def = ERRORS[code]
    super(message ?? def.message)
    this.name = 'SpanserveError'
    this.code = code
    this.status = def.status
    this.type = def.type
    this.param = param
  }
}

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERRORS, code)
}

/** OpenAI's error body. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string }
}

export function errorBody(err: SpanserveError): OpenAIErrorBody {
  return { error: { message: err.message, type: err.type, param: err.param, code: err.code } }
}
