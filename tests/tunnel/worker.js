// Plays a Cloudflare Tunnel / Workers VPC service in the contract suite: the gateway fetches
// endpoints with `"via": "VPC_CONTRACT"` through this Worker's service binding instead of directly.
// It forwards the request unchanged and marks the response so the test can see the path taken.
export default {
  async fetch(request) {
    const upstream = await fetch(request);
    const headers = new Headers(upstream.headers);
    headers.set("x-via-binding", "VPC_CONTRACT");
    return new Response(upstream.body, { status: upstream.status, headers });
  },
};
