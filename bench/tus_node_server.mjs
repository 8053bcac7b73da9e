// @tus/server with the FileStore, the Node.js reference server ferry is compared with.
// Usage: node tus_node_server.mjs PORT DIR
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';
import http from 'node:http';

const [port, dir] = process.argv.slice(2);
const tus = new Server({ path: '/files', datastore: new FileStore({ directory: dir }) });
http.createServer((req, res) => tus.handle(req, res)).listen(Number(port), '127.0.0.1', () => {
  console.log(`tus-node listening on ${port}`);
});
