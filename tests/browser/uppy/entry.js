// A third-party web app in front of ferry, as tusd's users build them: Uppy's Dashboard and
// its tus plugin, bundled by esbuild and served from another origin than the ferry server.
// The page reads the tus endpoint and a bearer token from its URL fragment
// (#endpoint=…&token=…) and reports what Uppy does on `window.report`.
import Uppy from "@uppy/core";
import Dashboard from "@uppy/dashboard";
import Tus from "@uppy/tus";
import "@uppy/core/css/style.min.css";
import "@uppy/dashboard/css/style.min.css";

const params = new URLSearchParams(location.hash.slice(1));
const report = { progress: 0, uploadURL: null, errors: [] };
window.report = report;

const uppy = new Uppy({ autoProceed: true })
  .use(Dashboard, { inline: true, target: "#uppy", proudlyDisplayPoweredByUppy: false })
  .use(Tus, {
    endpoint: params.get("endpoint"),
    headers: { Authorization: "Bearer " + params.get("token") },
    retryDelays: [0, 500, 1000],
  });
uppy.on("upload-progress", (_file, p) => {
  report.progress = p.bytesUploaded;
});
uppy.on("upload-success", (_file, response) => {
  report.uploadURL = response.uploadURL;
});
uppy.on("upload-error", (_file, error) => {
  report.errors.push(String(error));
});
window.uppy = uppy;
