// The WebSocket benchmark's handler: echo every message. The Deno.serve
// baseline serves this same module, with Deno's own upgradeWebSocket.
export default {
  fetch(request: Request): Response {
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.onmessage = (event) => socket.send(event.data);
    return response;
  },
} satisfies Deno.ServeDefaultExport;
