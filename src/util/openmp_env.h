// OpenMP's wait policy, chosen before libgomp starts.
//
// After each parallel region libgomp's idle threads spin (by default for ~300,000 iterations)
// before they sleep. On a machine where other processes want the cores, that spinning starves the
// thread that has real work: we measured single-stream decode fall from ~250 tok/s to ~3 tok/s
// on a loaded 2-core box. A shorter spin (GOMP_SPINCOUNT=20000, a few tens of microseconds) keeps
// nearly all of the quiet-machine speed and degrades gracefully under load.
//
// libgomp reads its environment when it is loaded, before main(), so the only way to set a
// default for the process itself is to re-execute it once with the variable set. A value the
// user already set (GOMP_SPINCOUNT or OMP_WAIT_POLICY) is always respected.
#pragma once

namespace loom {

// Call first thing in main(). Returns normally when nothing needs changing or when the re-exec
// is impossible; otherwise it does not return.
void ensure_openmp_wait_policy(char** argv);

}  // namespace loom
