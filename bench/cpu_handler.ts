// A handler module that spends about 10 µs of CPU per request, then answers
// as the trivial one does: the benchmark's "10 µs handler" row.
export default {
  fetch(): Response {
    const until = performance.now() + 0.01;
    let spins = 0;
    while (performance.now() < until) spins++;
    return Response.json({ hello: "world", spins: spins > 0 });
  },
};
