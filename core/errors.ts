/**
 * One error type for the conditions callers handle. `onError` in main.ts turns it into the
 * OpenAI-style envelope `{ error: { message, type, param, code } }`; anything else becomes a
 * plain 500 without a stack trace.
 */
export type ErrorCode =
  | "invalid_request"
  | "invalid_image"
  | "image_too_large"
  | "body_too_large"
  | "model_not_found"
  | "method_not_allowed"
  | "unsupported"
  | "unsupported_backend"
  | "not_ready"
  | "queue_full"
  | "queue_timeout"
  | "shutting_down"
  | "invalid_api_key"
  | "origin_not_allowed"
  | "cancelled"
  | "upstream_unavailable"
  | "upstream_failed"
  | "internal_error";

const STATUS: Record<ErrorCode, number> = {
  invalid_request: 400,
  invalid_image: 400,
  image_too_large: 413,
  body_too_large: 413,
  model_not_found: 404,
  method_not_allowed: 405,
  unsupported: 400,
  unsupported_backend: 400,
  not_ready: 503,
  queue_full: 429,
  queue_timeout: 503,
  shutting_down: 503,
  invalid_api_key: 401,
  origin_not_allowed: 403,
  cancelled: 499,
  upstream_unavailable: 503,
  upstream_failed: 502,
  internal_error: 500,
};

export class ApiError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly param: string | null = null,
    /** Seconds a client should wait before retrying (sent as Retry-After). */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = "ApiError";
    this.status = STATUS[code];
  }

  get type(): string {
    if (this.status >= 500) return "server_error";
    if (this.status === 429) return "rate_limit_error";
    return this.code === "model_not_found" ? "not_found_error" : "invalid_request_error";
  }

  toJSON() {
    return {
      error: { message: this.message, type: this.type, param: this.param, code: this.code },
    };
  }
}
