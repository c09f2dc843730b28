/** The built-in demo model (see models/marian-m30k-en-de/README.md for its provenance and licence of its data). */
import * as path from 'node:path';

/**
 * Absolute path of the demo model shipped with the package (English -> German, 2.4 M parameters, trained on
 * Multi30k: for trying chimera, not for products). Every command whose --model is optional uses it.
 */
export const demoModelPath: string = path.resolve(__dirname, '..', 'models', 'marian-m30k-en-de');
