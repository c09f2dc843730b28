/** The project's seeded PRNG (src/util/rng.ts), so benches use reproducible data. */
export { Rng } from '../src/util/rng';
