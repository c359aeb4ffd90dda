// AudioWorklet: the microphone at the context's rate -> pcm16 mono at 24 kHz, posted to the
// page in 40 ms pieces (what OpenAI's Realtime API takes: input_audio_buffer.append).
const OUT_RATE = 24000;
const PIECE = OUT_RATE / 25;

class Pcm16At24k extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / OUT_RATE; // input samples per output sample
    this.position = 0; // where the next output sample falls, in input samples
    this.previous = 0; // the last input sample of the previous block
    this.out = new Int16Array(PIECE);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    // Linear interpolation between input samples; a one-pole smoothing first keeps most
    // of what would fold back when the rate drops (48 kHz mics: above 12 kHz).
    const alpha = this.step > 1 ? 1 / this.step : 1;
    const smoothed = new Float32Array(channel.length);
    let last = this.previous;
    for (let i = 0; i < channel.length; i++) {
      last += alpha * (channel[i] - last);
      smoothed[i] = last;
    }
    // Output samples fall at `position` in [-1, n - 1): -1 is the previous block's last.
    const n = channel.length;
    while (this.position < n - 1) {
      const i = Math.floor(this.position);
      const frac = this.position - i;
      const a = i < 0 ? this.previous : smoothed[i];
      const b = smoothed[i + 1];
      const value = a + (b - a) * frac;
      this.out[this.filled++] = Math.max(-32768, Math.min(32767, Math.round(value * 32767)));
      if (this.filled === PIECE) {
        this.port.postMessage(this.out.buffer, [this.out.buffer]);
        this.out = new Int16Array(PIECE);
        this.filled = 0;
      }
      this.position += this.step;
    }
    this.position -= n;
    this.previous = last;
    return true;
  }
}

registerProcessor("pcm16-24k", Pcm16At24k);
