// Deployment settings, read by the dashboard at start. Replace this file when deploying (for example in the
// Static Web App's build step) instead of editing code. It must never hold a secret: anyone can read it.
// apiBase: the origin of the Opus API, e.g. "https://opus-api.azurewebsites.net"; "" means the same origin.
window.OPUS_CONFIG = Object.freeze({
  apiBase: "",
});
