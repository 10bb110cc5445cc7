/** A flag, environment variable or value that stops the start (exit code 2). */
import { SpanserveError } from '../errors.ts'

export class ConfigError extends SpanserveError {
  constructor(message: string) {
    super('SPANSERVE_ERR_CONFIG', message)
    this.name = 'ConfigError'
  }
}
