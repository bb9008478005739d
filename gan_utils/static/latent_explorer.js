// Latent explorer for the static book: a forward pass of a gan_utils generator in plain JavaScript.
// gan_utils.widgets.static_explorer_html() writes the model description, its weights (base64) and
// the slider directions next to this file's code; nothing is loaded from the network.
(function () {
  "use strict";

  function decodeWeights(base64, dtype) {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    if (dtype === "float32") return new Float32Array(bytes.buffer);
    const halves = new Uint16Array(bytes.buffer);
    const out = new Float32Array(halves.length);
    for (let i = 0; i < halves.length; i++) out[i] = halfToFloat(halves[i]);
    return out;
  }

  function halfToFloat(h) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const fraction = h & 0x3ff;
    if (exponent === 0) return sign * Math.pow(2, -14) * (fraction / 1024);
    if (exponent === 31) return fraction ? NaN : sign * Infinity;
    return sign * Math.pow(2, exponent - 15) * (1 + fraction / 1024);
  }

  // One layer at a time, in float64; x is a flat array in channel-major order with shape [C, H, W].
  const LAYERS = {
    linear(layer, p, x) {
      const W = p(layer.weight), b = p(layer.bias), n = layer.in, y = new Float64Array(layer.out);
      for (let o = 0; o < layer.out; o++) {
        let sum = b[o];
        const row = o * n;
        for (let i = 0; i < n; i++) sum += W[row + i] * x.data[i];
        y[o] = sum;
      }
      return { data: y, shape: [layer.out] };
    },
    batchnorm(layer, p, x) {
      const mean = p(layer.mean), variance = p(layer.var), w = p(layer.weight), b = p(layer.bias);
      const channels = layer.channels, size = x.data.length / channels, y = new Float64Array(x.data.length);
      for (let c = 0; c < channels; c++) {
        const scale = w[c] / Math.sqrt(variance[c] + layer.eps);
        for (let i = c * size; i < (c + 1) * size; i++) y[i] = (x.data[i] - mean[c]) * scale + b[c];
      }
      return { data: y, shape: x.shape };
    },
    relu(layer, p, x) {
      return { data: x.data.map((v) => (v > 0 ? v : 0)), shape: x.shape };
    },
    leaky_relu(layer, p, x) {
      return { data: x.data.map((v) => (v > 0 ? v : v * layer.slope)), shape: x.shape };
    },
    tanh(layer, p, x) {
      return { data: x.data.map(Math.tanh), shape: x.shape };
    },
    conv_transpose2d(layer, p, x) {
      // each input pixel adds a k x k copy of the kernel, scaled by its value, at stride s
      const W = p(layer.weight), [cin, h, w] = x.shape, cout = layer.out, k = layer.kernel;
      const s = layer.stride, pad = layer.padding;
      const ho = (h - 1) * s - 2 * pad + k, wo = (w - 1) * s - 2 * pad + k;
      const y = new Float64Array(cout * ho * wo);
      for (let ci = 0; ci < cin; ci++) {
        for (let ih = 0; ih < h; ih++) {
          for (let iw = 0; iw < w; iw++) {
            const v = x.data[(ci * h + ih) * w + iw];
            if (v === 0) continue;
            for (let co = 0; co < cout; co++) {
              const kernel = (ci * cout + co) * k * k;
              for (let kh = 0; kh < k; kh++) {
                const oh = ih * s - pad + kh;
                if (oh < 0 || oh >= ho) continue;
                for (let kw = 0; kw < k; kw++) {
                  const ow = iw * s - pad + kw;
                  if (ow < 0 || ow >= wo) continue;
                  y[(co * ho + oh) * wo + ow] += v * W[kernel + kh * k + kw];
                }
              }
            }
          }
        }
      }
      if (layer.bias) {
        const b = p(layer.bias);
        for (let co = 0; co < cout; co++) for (let i = co * ho * wo; i < (co + 1) * ho * wo; i++) y[i] += b[co];
      }
      return { data: y, shape: [cout, ho, wo] };
    },
  };

  function makeForward(model) {
    const weights = decodeWeights(model.weights, model.dtype);
    const p = (slice) => weights.subarray(slice[0], slice[0] + slice[1]);
    // a conditional generator appends its class embedding to z (models.ConditionalDCGANGenerator)
    const withClass = (z, label) => {
      if (!model.embedding) return Float64Array.from(z);
      const { dim, weight, n_classes } = model.embedding;
      if (!Number.isInteger(label) || label < 0 || label >= n_classes) {
        throw new RangeError(`class must be an integer in 0..${n_classes - 1}, got ${label}`);
      }
      const row = p(weight).subarray(label * dim, (label + 1) * dim);
      const input = new Float64Array(z.length + dim);
      input.set(z);
      input.set(row, z.length);
      return input;
    };
    // a self-conditioned generator takes its cluster from z's last coordinate (models.SelfConditionedGenerator)
    const thresholds = model.embedding && model.embedding.thresholds;
    return function forward(z, label = 0) {
      if (thresholds) {
        const last = z[z.length - 1];
        label = 0;
        while (label < thresholds.length && last >= thresholds[label]) label++;
        z = Array.from(z).slice(0, -1);
      }
      const input = withClass(z, label);
      let x = { data: input, shape: model.input === "map" ? [input.length, 1, 1] : [input.length] };
      for (const layer of model.layers) x = LAYERS[layer.type](layer, p, x);
      return Float32Array.from(x.data);
    };
  }

  // Seeded standard normal numbers: mulberry32 then Box-Muller.
  function normals(seed, n) {
    let a = seed >>> 0;
    const uniform = () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const out = new Float64Array(n);
    for (let i = 0; i < n; i += 2) {
      const r = Math.sqrt(-2 * Math.log(1 - uniform())), angle = 2 * Math.PI * uniform();
      out[i] = r * Math.cos(angle);
      if (i + 1 < n) out[i + 1] = r * Math.sin(angle);
    }
    return out;
  }

  function draw(canvas, image, shape) {
    const [channels, h, w] = shape, context = canvas.getContext("2d"), pixels = context.createImageData(w, h);
    for (let i = 0; i < h * w; i++) {
      for (let c = 0; c < 3; c++) {
        const v = image[(channels === 3 ? c : 0) * h * w + i];
        pixels.data[4 * i + c] = Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
      }
      pixels.data[4 * i + 3] = 255;
    }
    context.putImageData(pixels, 0, 0);
  }

  function mount(root, model) {
    const forward = makeForward(model);
    const canvas = root.querySelector("canvas"), seedBox = root.querySelector(".gan-seed");
    const sliders = Array.from(root.querySelectorAll(".gan-direction"));
    const timing = root.querySelector(".gan-timing"), classBox = root.querySelector(".gan-class");
    const currentLabel = () => (classBox ? Number(classBox.value) : 0);
    let base = normals(Number(seedBox.value), model.latent_dim);
    const currentZ = () => {
      const z = Float64Array.from(base);
      sliders.forEach((slider, k) => {
        const amount = Number(slider.value), direction = model.directions[k];
        for (let i = 0; i < z.length; i++) z[i] += amount * direction[i];
        slider.nextElementSibling.textContent = amount.toFixed(1);
      });
      return z;
    };
    const redraw = () => {
      const start = performance.now();
      draw(canvas, forward(currentZ(), currentLabel()), model.output_shape);
      timing.textContent = `forward pass ${(performance.now() - start).toFixed(1)} ms`;
    };
    sliders.forEach((slider) => slider.addEventListener("input", redraw));
    if (classBox) classBox.addEventListener("change", redraw);
    seedBox.addEventListener("change", () => {
      base = normals(Number(seedBox.value), model.latent_dim);
      redraw();
    });
    root.querySelector(".gan-random").addEventListener("click", () => {
      seedBox.value = Math.floor(Math.random() * 100000);
      seedBox.dispatchEvent(new Event("change"));
    });
    redraw();
    window.ganLatentExplorers = window.ganLatentExplorers || {};
    window.ganLatentExplorers[model.name] = { forward, redraw, currentZ, currentLabel, model };
  }

  document.querySelectorAll(".gan-latent-explorer[data-model]").forEach((root) => {
    if (root.dataset.mounted) return;
    root.dataset.mounted = "yes";
    mount(root, JSON.parse(document.getElementById(root.dataset.model).textContent));
  });
})();
