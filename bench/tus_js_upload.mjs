// Uploads one file with tus-js-client (Node, streaming from disk) and prints the seconds taken.
// Usage: node tus_js_upload.mjs ENDPOINT FILE
import fs from 'node:fs';
import * as tus from 'tus-js-client';

const [endpoint, file] = process.argv.slice(2);
const size = fs.statSync(file).size;
const started = process.hrtime.bigint();
await new Promise((resolve, reject) => {
  const up = new tus.Upload(fs.createReadStream(file), {
    endpoint,
    uploadSize: size,
    chunkSize: 256 * 1024 * 1024, // a ReadStream needs a chunk size; as large as ferry's PATCHes
    metadata: { filename: 'bench.bin' },
    onError: reject,
    onSuccess: resolve,
  });
  up.start();
});
console.log(Number(process.hrtime.bigint() - started) / 1e9);
