/**
 * The reference decoder loop on stock onnxruntime-node (greedy and beam with past K/V, src/engine/search.ts's
 * stopping rules, graphOptimizationLevel 'all'). It lives in src/onnx/ort-marian.ts so that `chimera assess`
 * can use it too; benches and tests import it from here.
 */
export * from '../src/onnx/ort-marian';
