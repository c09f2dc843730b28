/** `chimera export-onnx DIR OUT`: the model as standard ONNX (opset 17) in Optimum's layout, for onnxruntime. */
import { bool, type CommandArgs, type CommandSpec } from './args';

export const EXPORT_ONNX: CommandSpec = {
  name: 'export-onnx',
  args: 'DIR OUT',
  positionals: { min: 2, max: 2, message: 'export-onnx takes a model directory and an output directory (chimera export-onnx DIR OUT)' },
  summary: 'write the model as standard ONNX (opset 17) in Optimum\'s layout',
  description: 'encoder_model.onnx, decoder_model.onnx and decoder_with_past_model.onnx: the same weights, for onnxruntime; onnx/ holds the transformers.js layout (Optimum\'s merged decoder; *_quantized.onnx with --int8).',
  options: [
    { flag: 'int8', kind: 'boolean', help: 'quantize_dynamic-style DynamicQuantizeLinear + MatMulInteger Linears' },
    { flag: 'per-tensor', kind: 'boolean', help: 'with --int8: one weight scale per tensor (quantize_dynamic per_channel=False)' },
  ],
  run: exportOnnxCommand,
};

export async function exportOnnxCommand(a: CommandArgs): Promise<number> {
  const [dir, out] = a.positionals;
  const { exportMarianOnnx } = await import('../onnx/export-marian');
  const { ProgressBar } = await import('../progress');
  const int8 = bool(a, 'int8');
  const perTensor = bool(a, 'per-tensor');
  const bar = new ProgressBar(`exporting ${int8 ? 'int8' : 'fp32'} ONNX`);
  const r = exportMarianOnnx(dir, out, { int8, perTensor, onProgress: (d, t) => bar.update(d, t) });
  bar.done();
  for (const g of r.graphs) console.log(`wrote ${g.file}: ${(g.bytes / 1048576).toFixed(1)} MiB`);
  console.log(`${r.outDir}: opset 17, ${int8 ? `int8 (DynamicQuantizeLinear + MatMulInteger, ${perTensor ? 'per-tensor' : 'per-channel'} weight scales)` : 'fp32'}; copied ${r.copied.join(', ') || 'nothing'}`);
  return 0;
}
