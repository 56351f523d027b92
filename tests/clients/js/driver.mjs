// The @aws-sdk/client-s3 (v3) driver of the client matrix: one S3 operation per run, so
// that tests/clients/clients.py drives it exactly as it drives every other client.
//
// Environment: S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION; for
// HTTPS the caller sets NODE_EXTRA_CA_CERTS to the daemon's CA (Node's own mechanism).
// S3_VIRTUAL=1 uses virtual-hosted-style addressing (the SDK's default) instead of
// forcePathStyle; S3_LOOPBACK_DOMAIN=D then resolves D and *.D to 127.0.0.1 in this
// process only (the agents' DNS lookup), never through the machine's resolver.
// Operations: see tests/clients/rust/src/main.rs (same names, arguments and output).
import { lookup as dnsLookup } from "node:dns";
import { createReadStream, createWriteStream, readFileSync } from "node:fs";
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { pipeline } from "node:stream/promises";
import {
  S3Client, ListBucketsCommand, PutObjectCommand, GetObjectCommand, CopyObjectCommand,
  DeleteObjectCommand, DeleteObjectsCommand, paginateListObjectsV2,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";

const [op, ...args] = process.argv.slice(2);

if (op === "version") {
  const pkg = new URL("./node_modules/@aws-sdk/client-s3/package.json", import.meta.url);
  console.log(JSON.parse(readFileSync(pkg)).version);
  process.exit(0);
}

const loopback = process.env.S3_LOOPBACK_DOMAIN;
const lookup = (host, options, cb) =>
  dnsLookup(loopback && (host === loopback || host.endsWith(`.${loopback}`)) ? "127.0.0.1" : host, options, cb);

const s3 = new S3Client({
  requestHandler: { httpAgent: new HttpAgent({ lookup }), httpsAgent: new HttpsAgent({ lookup }) },
  endpoint: process.env.S3_ENDPOINT,
  region: process.env.AWS_REGION,
  credentials: {
    accessKeyId: process.env.AWS_ACCESS_KEY_ID,
    secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
  },
  forcePathStyle: process.env.S3_VIRTUAL !== "1",
  maxAttempts: 1,
});

// Each request's host on stderr (`request-host: NAME`), for the virtual-hosted-style test.
s3.middlewareStack.add((next) => async (args) => {
  console.error(`request-host: ${args.request.hostname}`);
  return next(args);
}, { step: "finalizeRequest", name: "s3volTraceHost" });

// The SDK sends x-amz-copy-source as given: the caller URL-encodes the key.
const copySource = (bucket, key) => `${bucket}/${key.split("/").map(encodeURIComponent).join("/")}`;

async function run() {
  switch (op) {
    case "list-buckets": {
      const r = await s3.send(new ListBucketsCommand({}));
      for (const b of r.Buckets ?? []) console.log(b.Name);
      break;
    }
    case "put": {
      const [Bucket, Key, file] = args;
      const body = readFileSync(file);
      const r = await s3.send(new PutObjectCommand({ Bucket, Key, Body: body }));
      console.log(r.ETag);
      break;
    }
    case "get": {
      const [Bucket, Key, file] = args;
      const r = await s3.send(new GetObjectCommand({ Bucket, Key }));
      await pipeline(r.Body, createWriteStream(file));
      break;
    }
    case "upload": {
      const [Bucket, Key, file] = args;
      const up = new Upload({
        client: s3, params: { Bucket, Key, Body: createReadStream(file) },
        partSize: 8 * 1024 * 1024, queueSize: 2,
      });
      const r = await up.done();
      console.log(r.ETag);
      break;
    }
    case "list": {
      const [Bucket, Prefix, Delimiter] = args;
      for await (const page of paginateListObjectsV2({ client: s3 }, { Bucket, Prefix, Delimiter })) {
        for (const o of page.Contents ?? []) console.log(`key\t${o.Key}`);
        for (const p of page.CommonPrefixes ?? []) console.log(`prefix\t${p.Prefix}`);
      }
      break;
    }
    case "copy": {
      const [srcBucket, srcKey, Bucket, Key] = args;
      await s3.send(new CopyObjectCommand({ Bucket, Key, CopySource: copySource(srcBucket, srcKey) }));
      break;
    }
    case "delete": {
      const [Bucket, Key] = args;
      await s3.send(new DeleteObjectCommand({ Bucket, Key }));
      break;
    }
    case "delete-many": {
      const [Bucket, ...keys] = args;
      const r = await s3.send(new DeleteObjectsCommand({
        Bucket, Delete: { Objects: keys.map((Key) => ({ Key })) },
      }));
      if (r.Errors?.length) throw new Error(`DeleteObjects errors: ${JSON.stringify(r.Errors)}`);
      break;
    }
    case "presign": {
      const [Bucket, Key] = args;
      console.log(await getSignedUrl(s3, new GetObjectCommand({ Bucket, Key }), { expiresIn: 600 }));
      break;
    }
    default:
      throw new Error(`unknown operation ${op}`);
  }
}

run().catch((e) => {
  console.error(`error: ${e.name}: ${e.message} (HTTP ${e.$metadata?.httpStatusCode ?? "-"})`);
  process.exit(1);
});
