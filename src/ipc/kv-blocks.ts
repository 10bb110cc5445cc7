/**
 * KV blocks: the one unit of KV cache that the scheduler allocates and the worker holds (vLLM's
 * block manager, SGLang's token-to-KV pool with a page size). A sequence's KV is a table of block
 * ids, each holding KV_BLOCK_TOKENS consecutive positions. The scheduler owns the ids and their
 * reference counts: a block is shared by every sequence whose table names it and by the prefix cache,
 * and is free once none does. The worker keeps each block's data under its id until the scheduler
 * frees it, so a sequence can start from blocks already filled (a cached prefix) at any position
 * that is a block boundary.
 *
 * The block size is part of the contract between the processes (block tables cross IPC); the
 * scheduler's allocator is src/scheduler/kv-block-pool.ts.
 */

/** Positions per block. Prefixes are shared in whole blocks (a partly filled block is never shared). */
export const KV_BLOCK_TOKENS = 16

/** Blocks that hold `tokens` positions. */
export function blocksFor(tokens: number): number {
  return Math.ceil(tokens / KV_BLOCK_TOKENS)
}

/** The block boundary at or below `tokens`. */
export function alignDown(tokens: number): number {
  return tokens - (tokens % KV_BLOCK_TOKENS)
}

/**
 * Prefill/decode disaggregation: the prompt positions whose KV crosses from the prefill instance to
 * the decode instance. All but the last prompt token (the decode instance computes that one, whose
 * logits give the first output token, as vLLM's NIXL connector does), down to a block boundary:
 * KV crosses in whole blocks, and the decode instance prefills the rest (under one block).
 */
export function transferredTokens(promptTokens: number): number {
  return alignDown(Math.max(0, promptTokens - 1))
}

/** A tcp:// address for a host name or an IPv4/IPv6 address (in brackets, as ZeroMQ wants it). */
export function tcpAddress(host: string, port: number | string): string {
  return `tcp://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`
}
