// Known answers from RFC 6238, appendix B (SHA-1 key "12345678901234567890").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { base32Decode, hotp, totp } from './totp.js';

const KEY_B32 = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';

test('base32 decodes the RFC key', () => {
  assert.equal(base32Decode(KEY_B32).toString(), '12345678901234567890');
});

test('RFC 6238 vectors, 6 digits', () => {
  for (const [t, code] of [[59, '287082'], [1111111109, '081804'], [1111111111, '050471'], [1234567890, '005924'], [2000000000, '279037']]) {
    assert.equal(totp(KEY_B32, t), code, `t=${t}`);
  }
  assert.equal(hotp(Buffer.from('12345678901234567890'), 0), '755224');
});
