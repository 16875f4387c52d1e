"use strict";
// The seed's own stack, as the bench's point of comparison: a Socket.IO 4 room server with the
// product's chat frames. `join` enters a room; `send` gives the message the room's next
// sequence number, broadcasts it to the room (sender included) with io.to(room).emit, which
// encodes the packet once for all members, and acknowledges it to the sender. No storage and
// no authentication: it is the fan-out being compared.
const http = require("http");
const { randomUUID } = require("crypto");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 0);
const host = process.env.HOST || "127.0.0.1";
const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ["websocket"],
  perMessageDeflate: false,
  serveClient: false,
  maxHttpBufferSize: 65536,
});
const lastSeq = new Map();

function refuse(ack, code, message) {
  if (typeof ack === "function") ack({ t: "error", code, message });
}

io.on("connection", (socket) => {
  const auth = socket.handshake.auth || {};
  const name = typeof auth.user === "string" ? auth.user : socket.id;

  socket.on("join", (data, ack) => {
    const room = data && data.room;
    if (typeof room !== "string") return refuse(ack, "validation_error", "room is required");
    socket.join(room);
    if (typeof ack === "function") ack({ t: "joined", room, lastSeq: lastSeq.get(room) || 0 });
  });

  socket.on("send", (data, ack) => {
    const room = data && data.room;
    if (typeof room !== "string" || !socket.rooms.has(room)) {
      return refuse(ack, "not_joined", "join the room first");
    }
    const seq = (lastSeq.get(room) || 0) + 1;
    lastSeq.set(room, seq);
    const message = {
      t: "message",
      room,
      seq,
      id: randomUUID(),
      sender: { id: name, username: name },
      kind: "text",
      body: String(data.body),
      ts: new Date().toISOString(),
      cid: data.cid,
    };
    io.to(room).emit("message", message);
    if (typeof ack === "function") {
      ack({ t: "ack", room, cid: data.cid, seq, id: message.id, duplicate: false });
    }
  });
});

httpServer.listen(port, host, () => {
  const address = httpServer.address();
  console.log(`Socket.IO peer listening on http://${address.address}:${address.port}`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    io.close();
    process.exit(0);
  });
}
