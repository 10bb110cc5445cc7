/**
 * ZeroMQ CURVE for the tcp transport (--ipc-secret): every socket encrypts and every connection
 * must know the server key. All processes derive one X25519 key pair from the shared secret, so a
 * peer without the secret can neither connect nor read the traffic. ipc:// sockets do not need it:
 * their directory is private to the user.
 */
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto'

export interface CurveKeys {
  publicKey: string
  secretKey: string
}

const Z85 = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#'

/** ZeroMQ's Z85 text encoding of a key (32 bytes → 40 characters). */
export function z85(bytes: Uint8Array): string {
  if (bytes.length % 4 !== 0) throw new Error('z85: length must be a multiple of 4')
  let out = ''
  for (let i = 0; i < bytes.length; i += 4) {
    let value = ((bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!) >>> 0
    let chunk = ''
    for (let k = 0; k < 5; k++) {
      chunk = Z85[value % 85]! + chunk
      value = Math.floor(value / 85)
    }
    out += chunk
  }
  return out
}

// PKCS#8 wrapping of a raw X25519 private key, so node:crypto can derive its public half.
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')

export function deriveCurveKeys(secret: string): CurveKeys {
  const raw = createHash('sha256').update('spanserve ipc curve\0').update(secret).digest()
  const privateKey = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' })
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' })
  return { secretKey: z85(raw), publicKey: z85(spki.subarray(spki.length - 32)) }
}

let processKeys: CurveKeys | null = null

/** Called once at start by every process with --ipc-secret; '' turns CURVE off. */
export function useIpcSecret(secret: string): void {
  processKeys = secret ? deriveCurveKeys(secret) : null
}

/** Options for a socket that binds. */
export function bindOptions(keys: CurveKeys | null = processKeys): object {
  return keys ? { curveServer: true, curveSecretKey: keys.secretKey, curvePublicKey: keys.publicKey } : {}
}

/** Options for a socket that connects. */
export function connectOptions(keys: CurveKeys | null = processKeys): object {
  return keys ? { curveServerKey: keys.publicKey, curvePublicKey: keys.publicKey, curveSecretKey: keys.secretKey } : {}
}
