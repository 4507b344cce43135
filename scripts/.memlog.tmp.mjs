import v8 from 'node:v8';
setTimeout(() => {
  const m = process.memoryUsage(); const f = (x) => (x / 1048576).toFixed(1);
  process.stderr.write(`MEM rss ${f(m.rss)} heapTotal ${f(m.heapTotal)} heapUsed ${f(m.heapUsed)} external ${f(m.external)} ab ${f(m.arrayBuffers)}\n`);
  for (const s of v8.getHeapSpaceStatistics()) process.stderr.write(`  ${s.space_name} size ${f(s.space_size)} used ${f(s.space_used_size)} phys ${f(s.physical_space_size)}\n`);
}, 5000).unref();
