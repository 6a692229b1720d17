#!/usr/bin/env node
// Validates AsyncAPI documents (JSON or YAML) with the official @asyncapi/parser and its
// default rules, with the official Avro and Protobuf schema parsers registered (messages of
// those formats carry their own schemas). Prints every diagnostic with its severity and a summary line per file:
//   <file>: 0 errors, 0 warnings (N infos, M hints)
// With --payloads first, also prints each message's payload as the parser read it (what a
// Protobuf or Avro schema became):
//   <file>: payload <message id>: <title> {<property>, ...}
// Exits 1 when any file has an error or a warning (or cannot be read), 2 on bad usage.
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";
import { AvroSchemaParser } from "@asyncapi/avro-schema-parser";
import { ProtoBuffSchemaParser } from "@asyncapi/protobuf-schema-parser";

const SEVERITY = ["error", "warning", "info", "hint"];

const payloads = process.argv[2] === "--payloads";
const files = process.argv.slice(payloads ? 3 : 2);
if (files.length === 0) {
  console.error("usage: node validate.mjs FILE...");
  process.exit(2);
}

const parser = new Parser({ schemaParsers: [AvroSchemaParser(), ProtoBuffSchemaParser()] });
let failed = false;
for (const file of files) {
  let text;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    console.log(`${file}: cannot read: ${err.message}`);
    failed = true;
    continue;
  }
  const { document, diagnostics } = await parser.parse(text, { source: file });
  const counts = [0, 0, 0, 0];
  for (const d of diagnostics) {
    counts[d.severity] = (counts[d.severity] ?? 0) + 1;
    const where = d.path && d.path.length ? ` at /${d.path.join("/")}` : "";
    console.log(`${file}: ${SEVERITY[d.severity] ?? d.severity} [${d.code}] ${d.message}${where}`);
  }
  if (!document && counts[0] === 0) {
    counts[0] = 1;
    console.log(`${file}: error [unparsed] the document could not be parsed`);
  }
  if (payloads && document) {
    for (const message of document.allMessages()) {
      const payload = message.payload();
      const properties = Object.keys(payload?.properties() ?? {}).join(", ");
      console.log(`${file}: payload ${message.id()}: ${payload?.title()} {${properties}}`);
    }
  }
  console.log(
    `${file}: ${counts[0]} errors, ${counts[1]} warnings (${counts[2]} infos, ${counts[3]} hints)` +
      (document ? `; AsyncAPI ${document.version()}` : ""),
  );
  if (counts[0] > 0 || counts[1] > 0) failed = true;
}
process.exit(failed ? 1 : 0);
