// The official tus-js-client 4.x (Node) against `ferry serve`: a plain upload, a parallel
// upload (parallelUploads: 4, which uses the concatenation extension), and an upload that
// is aborted and then resumed from the stored URL. Every file is downloaded back from
// /files/ and compared by SHA-256. Usage: node tus_js_client.mjs http://127.0.0.1:PORT
import { createHash, randomBytes } from 'node:crypto';
import * as tus from 'tus-js-client';

const server = process.argv[2];
const endpoint = `${server}/tus/`;

function sha256(buf) {
  return createHash('sha256').update(buf).digest('hex');
}

function upload(data, name, options = {}) {
  return new Promise((resolve, reject) => {
    const up = new tus.Upload(data, {
      endpoint,
      metadata: { filename: name, dir: 'js' },
      retryDelays: [0, 500, 1000],
      onError: reject,
      onSuccess: () => resolve(up),
      ...options,
    });
    up.start();
  });
}

async function fetchBack(name) {
  const res = await fetch(`${server}/files/js/${name}`);
  if (res.status !== 200) throw new Error(`GET ${name}: ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

async function check(name, data) {
  const got = await fetchBack(name);
  if (sha256(got) !== sha256(data)) throw new Error(`${name}: SHA-256 differs after upload`);
  console.log(`ok   tus-js-client ${name} (${data.length} bytes)`);
}

const single = randomBytes(8 * 1024 * 1024 + 17);
await upload(single, 'single.bin');
await check('single.bin', single);

const parallel = randomBytes(12 * 1024 * 1024 + 3);
await upload(parallel, 'parallel.bin', { parallelUploads: 4 });
await check('parallel.bin', parallel);

// Abort after some progress, then resume with a fresh Upload object from the stored URL.
const resumable = randomBytes(16 * 1024 * 1024);
let uploadUrl;
await new Promise((resolve, reject) => {
  const up = new tus.Upload(resumable, {
    endpoint,
    chunkSize: 1024 * 1024,
    metadata: { filename: 'resumed.bin', dir: 'js' },
    onError: reject,
    onSuccess: () => reject(new Error('finished before it could be aborted')),
    onChunkComplete: (_chunk, sent) => {
      if (sent >= 4 * 1024 * 1024 && !uploadUrl) {
        uploadUrl = up.url;
        up.abort().then(resolve, reject);
      }
    },
  });
  up.start();
});
let resumedFrom = -1;
await upload(resumable, 'resumed.bin', {
  uploadUrl,
  onProgress: (sent) => {
    if (resumedFrom < 0) resumedFrom = sent;
  },
});
if (resumedFrom < 4 * 1024 * 1024) throw new Error(`resume started at ${resumedFrom}, expected >= 4 MiB`);
await check('resumed.bin', resumable);
console.log(`ok   tus-js-client resumed at ${resumedFrom} bytes`);
