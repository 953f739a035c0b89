// The Socket.IO side of row 3 (benches/peers/run starts it): the relay a team would build
// instead of Tidings. On `send` it appends the message to a Redis stream (the Redis server runs
// with appendfsync always, so the XADD returns once the record is fsynced), then emits it to the
// room and acks the sender. On `join` the socket joins the room and is acked.
// Usage: node server.js PORT REDIS_URL   (prints "listening on http://127.0.0.1:PORT"; PORT 0 picks one)
'use strict';

const http = require('node:http');
const { Server } = require('socket.io');
const { createClient } = require('redis');

async function main() {
  const [port, redisUrl] = process.argv.slice(2);
  if (!port || !redisUrl) {
    console.error('usage: node server.js PORT REDIS_URL');
    process.exit(2);
  }
  const redis = createClient({ url: redisUrl });
  redis.on('error', (error) => console.error('redis:', error.message));
  await redis.connect();

  const io = new Server({ serveClient: false, transports: ['websocket'] });
  io.on('connection', (socket) => {
    socket.on('join', (room, ack) => {
      socket.join(String(room));
      if (typeof ack === 'function') ack({ ok: true });
    });
    socket.on('send', async (message, ack) => {
      const reply = typeof ack === 'function' ? ack : () => {};
      if (!message || typeof message.room !== 'string' || typeof message.content !== 'string') {
        reply({ error: 'send needs {room, content}' });
        return;
      }
      try {
        const id = await redis.xAdd('messages', '*', { room: message.room, content: message.content });
        io.to(message.room).emit('message', { id, room: message.room, content: message.content });
        reply({ id });
      } catch (error) {
        reply({ error: String(error) });
      }
    });
  });
  // Loopback only; port 0 picks a free port, printed as the Tidings server prints its own.
  const httpServer = http.createServer();
  io.attach(httpServer);
  httpServer.listen(Number(port), '127.0.0.1', () => {
    console.log(`listening on http://127.0.0.1:${httpServer.address().port}`);
  });

  const stop = async () => {
    io.close();
    await redis.quit();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
