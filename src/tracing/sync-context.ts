/**
 * The server's context manager: an active context for synchronous code only (a stack, as the web
 * SDK's StackContextManager keeps one). @fastify/otel parents its spans on the request's context
 * explicitly and reads the active one only inside its own synchronous `context.with`; the server
 * passes each request's context on explicitly too (request.opentelemetry(), request-trace.ts). An
 * AsyncLocalStorage would carry the context across awaits no one here reads it across, and on Node 20
 * it runs async hooks for every promise of the process, tracing's largest share of the server's CPU
 * per request. The router keeps AsyncLocalStorage: its proxy reads the active span after awaits.
 */
import { ROOT_CONTEXT, type Context, type ContextManager } from '@opentelemetry/api'

export class SyncContextManager implements ContextManager {
  private current: Context = ROOT_CONTEXT

  active(): Context {
    return this.current
  }

  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(ctx: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> {
    const before = this.current
    this.current = ctx
    try {
      return fn.call(thisArg, ...args)
    } finally {
      this.current = before
    }
  }

  bind<T>(ctx: Context, target: T): T {
    if (typeof target !== 'function') return target
    const manager = this
    const fn = target as unknown as (...args: unknown[]) => unknown
    return function (this: unknown, ...args: unknown[]) {
      return manager.with(ctx, fn, this, ...args)
    } as unknown as T
  }

  enable(): this {
    return this
  }

  disable(): this {
    this.current = ROOT_CONTEXT
    return this
  }
}
