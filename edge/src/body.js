// The upstream's response body on its way to the client, with no call into wasm per chunk
// (imported by edge/src/proxy.rs through wasm-bindgen). Rust hears once, at the end
// (`BodyEnd.finish`), how many bytes went out, what was kept for the usage tap (core's
// `Meter::keep`) and how the body ended. What core's `Guarded` does in Rust is done here alike:
// the idle timeout (one timer for the whole stream, never one per chunk), the closing event core
// rendered for a broken event stream (or an error for any other body), and the upstream fetch
// aborted when the client goes away.
//
// The client going away is heard two ways: the runtime cancels this stream (when a pending read
// finds the client gone), and the incoming request's `signal` aborts (compatibility flag
// `enable_request_signal`). workerd does not always do the first: a client that hangs up while
// chunks flow left vLLM generating the whole answer. Either one ends the body once.
//
// The body passes through a pull stream: each chunk is counted and kept in JavaScript as the
// client reads it, so the client's pace holds the upstream back, and the idle timer runs only
// while the client waits on the upstream, as in `Guarded`. Measured in workerd (CPU per streamed
// chunk): a TransformStream through pipeThrough costs more than this; a tee whose one branch the
// runtime pipes to the client costs less, but workerd's pipeTo errors its destination when the
// source fails or the pipe is aborted (preventAbort notwithstanding), so the closing event of a
// broken event stream could not be sent after it.

// How a body ended, as `BodyEnd.finish` reads it.
const ENDED = 0;
const UPSTREAM_FAILED = 1;
const IDLE = 2;
const CLIENT_GONE = 3;

// What is kept for the usage tap (core's `Keep`): nothing, the last `keepLimit` bytes at least,
// or the whole body while it is at most `keepLimit` bytes.
const KEEP_NONE = 0;
const KEEP_TAIL = 1;

/** A copy of `chunk`'s bytes from `from` on (the chunk itself goes on to the client). */
function copyOf(chunk, from = 0) {
  const bytes = ArrayBuffer.isView(chunk) ? new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength) : new Uint8Array(chunk);
  return bytes.slice(from);
}

/** Counts a body's bytes and keeps what the usage tap needs, then hands both to `end` once. */
class Tally {
  constructor(keepMode, keepLimit, end) {
    this.keepMode = keepMode;
    this.keepLimit = keepLimit;
    this.end = end;
    this.bytes = 0;
    this.kept = [];
    this.keptBytes = 0;
    this.cut = false;
  }

  add(chunk) {
    const n = chunk.byteLength;
    this.bytes += n;
    if (this.keepMode === KEEP_NONE) return;
    if (this.keepMode === KEEP_TAIL) {
      if (n >= this.keepLimit) {
        this.kept = [copyOf(chunk, n - this.keepLimit)];
        this.keptBytes = this.keepLimit;
        this.cut = this.bytes > this.keepLimit;
        return;
      }
      this.kept.push(copyOf(chunk));
      this.keptBytes += n;
      // Whole chunks, dropped from the front while the rest still holds the limit.
      while (this.keptBytes - this.kept[0].byteLength >= this.keepLimit) {
        this.keptBytes -= this.kept.shift().byteLength;
        this.cut = true;
      }
    } else if (!this.cut) {
      if (this.bytes > this.keepLimit) {
        this.kept = [];
        this.keptBytes = 0;
        this.cut = true;
      } else {
        this.kept.push(copyOf(chunk));
        this.keptBytes += n;
      }
    }
  }

  /** Hands everything to Rust; true the first time only. */
  finish(how, detail) {
    const end = this.end;
    if (end === null) return false;
    this.end = null;
    let joined = this.kept.length === 1 ? this.kept[0] : new Uint8Array(this.keptBytes);
    if (this.kept.length > 1) {
      let at = 0;
      for (const k of this.kept) {
        joined.set(k, at);
        at += k.byteLength;
      }
    }
    this.kept = [];
    end.finish(this.bytes, joined, this.cut, how, detail);
    return true;
  }

  get over() {
    return this.end === null;
  }
}

/**
 * `body` (the upstream's ReadableStream) as a stream for the client.
 * `abort`: the upstream fetch's AbortController. `idleMs`: the longest wait for a chunk while
 * the client waits for one.
 * `sse`: an event stream, which ends with `idleEnd` / `brokenEnd` (events core rendered) when cut
 * short; any other body errors with them as the message. `keepMode`, `keepLimit`: see KEEP_*.
 * `end`: a `BodyEnd`, finished exactly once. `clientGone`: the incoming request's signal, or
 * null.
 */
export function passBody(body, abort, idleMs, sse, idleEnd, brokenEnd, keepMode, keepLimit, end, clientGone) {
  const tally = new Tally(keepMode, keepLimit, end);
  return pulled(body, abort, idleMs, sse, idleEnd, brokenEnd, tally, clientGone);
}

/**
 * Aborts `abort` (an upstream fetch's controller) when `clientGone` (the incoming request's
 * signal) aborts; returns what stops listening.
 */
export function abortWhenClientGoes(clientGone, abort) {
  if (!clientGone) return () => {};
  if (clientGone.aborted) {
    abort.abort();
    return () => {};
  }
  const onAbort = () => abort.abort();
  clientGone.addEventListener("abort", onAbort, { once: true });
  return () => clientGone.removeEventListener("abort", onAbort);
}

/** A pull stream that counts each chunk as the client takes it. */
function pulled(body, abort, idleMs, sse, idleEnd, brokenEnd, tally, clientGone) {
  const reader = body.getReader();
  // When the pending read started, or -1 when none is pending (the client is not waiting).
  let waitingSince = -1;
  let timer = null;
  let out = null;

  let unlisten = () => {};

  function finish(how, detail) {
    waitingSince = -1;
    if (timer !== null) clearTimeout(timer);
    timer = null;
    unlisten();
    tally.finish(how, detail);
  }

  // The client went away: the upstream is stopped first (so vLLM stops generating), then the
  // end is reported.
  function gone(reason) {
    if (tally.over) return undefined;
    abort.abort();
    const cancelled = reader.cancel(reason).catch(() => {});
    finish(CLIENT_GONE, "");
    return cancelled;
  }

  function fault(how, detail) {
    const text = how === IDLE ? idleEnd : brokenEnd;
    reader.cancel().catch(() => {});
    abort.abort();
    if (sse) {
      const event = new TextEncoder().encode(text);
      tally.bytes += event.byteLength;
      finish(how, detail);
      out.enqueue(event);
      out.close();
    } else {
      finish(how, detail);
      out.error(new Error(text));
    }
  }

  // One timer: when it fires early (the read it watched ended), it is re-armed for the time left.
  function onTimer() {
    timer = null;
    // Not waiting on the upstream (the client is not reading): the next read arms it again.
    if (tally.over || waitingSince < 0) return;
    const waited = Date.now() - waitingSince;
    if (waited >= idleMs) {
      fault(IDLE, "");
    } else {
      timer = setTimeout(onTimer, idleMs - waited);
    }
  }

  function got(r) {
    if (tally.over) return;
    waitingSince = -1;
    if (r.done) {
      finish(ENDED, "");
      out.close();
      return;
    }
    tally.add(r.value);
    out.enqueue(r.value);
  }

  function failed(e) {
    if (tally.over) return;
    fault(UPSTREAM_FAILED, String(e));
  }

  return new ReadableStream(
    {
      start(c) {
        out = c;
        if (clientGone) {
          if (clientGone.aborted) return gone(undefined);
          const onAbort = () => {
            gone(undefined);
            // Nobody reads it any more; closed rather than errored, which workerd would log.
            try {
              out.close();
            } catch (_) {
              // already closed
            }
          };
          clientGone.addEventListener("abort", onAbort, { once: true });
          unlisten = () => clientGone.removeEventListener("abort", onAbort);
        }
      },
      pull() {
        waitingSince = Date.now();
        if (timer === null) timer = setTimeout(onTimer, idleMs);
        return reader.read().then(got, failed);
      },
      cancel(reason) {
        return gone(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
