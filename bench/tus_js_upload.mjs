// Uploads one file with tus-js-client (Node) and prints the seconds taken.
// Usage: node tus_js_upload.mjs ENDPOINT FILE [PARALLEL]
// One upload streams from disk; with PARALLEL > 1 the file is read into memory (tus-js-client
// can only slice a Buffer for parallel parts) and sent as that many partial uploads joined by
// a final upload (the concatenation extension).
import fs from 'node:fs';
import * as tus from 'tus-js-client';

const [endpoint, file, parallelArg] = process.argv.slice(2);
const parallel = Number(parallelArg || 1);
const size = fs.statSync(file).size;
const input = parallel > 1 ? fs.readFileSync(file) : fs.createReadStream(file);
const started = process.hrtime.bigint();
await new Promise((resolve, reject) => {
  const options = {
    endpoint,
    metadata: { filename: 'bench.bin' },
    onError: reject,
    onSuccess: resolve,
  };
  if (parallel > 1) {
    options.parallelUploads = parallel; // the Buffer's size is the upload's
  } else {
    options.uploadSize = size;
    options.chunkSize = 256 * 1024 * 1024; // a ReadStream needs a chunk size; as large as ferry's PATCHes
  }
  new tus.Upload(input, options).start();
});
console.log(Number(process.hrtime.bigint() - started) / 1e9);
