// Dictate: the microphone, through an AudioWorklet, to /v1/realtime (OpenAI's Realtime
// transcription protocol); each utterance shows lighter until its final text comes.
const button = document.getElementById("dictate-button");
const stopButton = document.getElementById("dictate-stop");
const output = document.getElementById("dictate-text");
const statusLine = document.getElementById("dictate-status");
const jobLink = document.getElementById("dictate-job");

let session = null; // {ws, stream, context}

function say(text) {
  statusLine.textContent = text;
}

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function utterance(itemId) {
  let span = output.querySelector(`[data-item="${CSS.escape(itemId)}"]`);
  if (!span) {
    span = document.createElement("span");
    span.dataset.item = itemId;
    span.className = "utterance pending";
    output.append(span, " ");
  }
  return span;
}

function onEvent(event) {
  switch (event.type) {
    case "session.created":
      jobLink.href = `/jobs/${event.session.job_id}`;
      jobLink.textContent = `job ${event.session.job_id}`;
      jobLink.hidden = false;
      say("Listening…");
      break;
    case "input_audio_buffer.speech_started":
      say("Hearing speech…");
      break;
    case "conversation.item.input_audio_transcription.delta":
      utterance(event.item_id).textContent += event.delta;
      break;
    case "conversation.item.input_audio_transcription.completed": {
      const span = utterance(event.item_id);
      span.textContent = event.transcript;
      span.className = "utterance final";
      say("Listening…");
      break;
    }
    case "error":
      say(`Error: ${event.error.message}`);
      break;
    default:
  }
}

async function start() {
  button.disabled = true;
  say("Asking for the microphone…");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
    });
  } catch (error) {
    say(`No microphone: ${error.message}`);
    button.disabled = false;
    return;
  }
  const context = new AudioContext();
  await context.audioWorklet.addModule("/static/pcm-worklet.js");
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "pcm16-24k");
  const mute = context.createGain();
  mute.gain.value = 0; // pulled by the destination, heard by nobody
  source.connect(node).connect(mute).connect(context.destination);

  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/v1/realtime?intent=transcription`);
  session = { ws, stream, context };
  node.port.onmessage = (message) => {
    if (ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "input_audio_buffer.append", audio: base64(message.data) }));
    }
  };
  ws.onmessage = (message) => onEvent(JSON.parse(message.data));
  ws.onclose = (close) => {
    if (session && session.ws === ws) finish(close.code === 1000 ? "Stopped." : `Closed (${close.reason || close.code}).`);
  };
  stopButton.hidden = false;
  stopButton.focus();
}

function finish(message) {
  const { ws, stream, context } = session;
  session = null;
  if (ws.readyState <= WebSocket.OPEN) ws.close(1000, "stopped");
  stream.getTracks().forEach((track) => track.stop());
  context.close();
  stopButton.hidden = true;
  button.disabled = false;
  say(message);
}

button.addEventListener("click", start);
stopButton.addEventListener("click", () => session && finish("Stopped."));
