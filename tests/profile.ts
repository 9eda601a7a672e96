/**
 * The backend the in-process API tests run on: the native CPU backend, unless
 * `MM_TEST_BACKEND` says otherwise — `deno task test:portable` runs the same tests on WASM with
 * sharp's WebAssembly build and no native code (see tests/portable_test.ts).
 */
export const TEST_BACKEND = Deno.env.get("MM_TEST_BACKEND") ?? "cpu";

// sharp's WebAssembly build finishes its work on threads that do not keep Deno's event loop
// alive; a server has its listener for that, a test file has nothing. This interval is it.
if (TEST_BACKEND === "wasm") setInterval(() => {}, 60_000);
