// The trivial handler module the benchmark serves: what a `deno serve` user
// writes first. The Deno.serve baseline serves this same module.
export default {
  fetch(): Response {
    return Response.json({ hello: "world", served: "by a worker" });
  },
};
