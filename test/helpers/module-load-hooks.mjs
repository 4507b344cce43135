// Module loader hooks (registered with node:module's `register`) that post the URL of every module
// the process loads to the port given as `data.port`. Tests use them to see which modules an
// import pulls in, e.g. that building the driver registry loads no simulator.
let port;

export function initialize(data) {
  port = data.port;
}

export async function load(url, context, nextLoad) {
  port.postMessage(url);
  return nextLoad(url, context);
}
