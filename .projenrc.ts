import { JsonFile, awscdk, cdk, javascript } from 'projen';
import { UpdateSnapshot } from 'projen/lib/javascript';

/** The Lambda runtime the handlers run on, and the esbuild target that matches it. */
const NODE_TARGET = 'node22';

/** SDK clients the handlers call: bundled, so what runs in Lambda is what the tests ran. */
const HANDLER_DEPS = [
  '@aws-sdk/client-fsx',
  '@aws-sdk/client-ec2',
  '@aws-sdk/client-ebs',
  '@aws-sdk/client-cloudformation',
  '@aws-sdk/client-s3',
  '@aws-sdk/client-dynamodb',
  '@aws-lambda-powertools/logger',
  '@aws-lambda-powertools/metrics',
];

const project = new awscdk.AwsCdkConstructLibrary({
  name: 'cdk-storage-snapshots',
  description:
    'AWS CDK constructs that take FSx backups, FSx for OpenZFS snapshots and EBS snapshots ' +
    'during deploy or on a schedule: idempotent, waited for, least-privilege.',
  author: 'cdk-storage-snapshots maintainers',
  authorAddress: 'maintainers@cdk-storage-snapshots.invalid',
  repositoryUrl: 'https://github.com/cdk-storage-snapshots/cdk-storage-snapshots.git',
  license: 'Apache-2.0',
  stability: cdk.Stability.EXPERIMENTAL,
  keywords: ['cdk', 'awscdk', 'aws-cdk', 'fsx', 'ebs', 'snapshot', 'backup', 'openzfs'],
  defaultReleaseBranch: 'main',
  packageManager: javascript.NodePackageManager.NPM,
  projenrcTs: true,

  // 2.245.0: the minimum for @aws-cdk/integ-tests-alpha, and its provider framework starts the
  // waiter without naming the execution after the RequestId (aws-cdk PR #35988), so a retried
  // request with the same RequestId is not refused by Step Functions.
  cdkVersion: '2.245.0',
  constructsVersion: '10.5.1',
  jsiiVersion: '~6.0.0',

  publishToPypi: {
    distName: 'cdk-storage-snapshots',
    module: 'cdk_storage_snapshots',
  },
  publishToMaven: {
    javaPackage: 'io.github.cdkstoragesnapshots',
    mavenGroupId: 'io.github.cdkstoragesnapshots',
    mavenArtifactId: 'cdk-storage-snapshots',
  },
  publishToNuget: {
    dotNetNamespace: 'CdkStorageSnapshots',
    packageId: 'CdkStorageSnapshots',
  },
  publishToGo: {
    moduleName: 'github.com/cdk-storage-snapshots/cdk-storage-snapshots-go',
  },

  devDeps: [
    ...HANDLER_DEPS,
    '@types/aws-lambda',
    'esbuild',
    'aws-sdk-client-mock',
    'aws-sdk-client-mock-jest',
    'fast-check',
    'aws-cdk@^2',
    'cdk-nag@^2',
    '@cdklabs/cdk-validator-cfnguard',
    // The EBS direct benchmark gives the SDK client a larger socket pool.
    '@smithy/node-http-handler',
    '@aws-cdk/integ-tests-alpha@2.245.0-alpha.0',
    '@aws-cdk/integ-runner@^2',
  ],

  jestOptions: {
    // Never rewrite committed snapshots silently, in CI or anywhere else.
    updateSnapshot: UpdateSnapshot.NEVER,
    passWithNoTests: false,
    jestConfig: {
      testMatch: ['<rootDir>/test/**/*.test.ts'],
      // Handlers log structured JSON; keep test output readable (POWERTOOLS_LOG_LEVEL=INFO to see it).
      setupFiles: ['<rootDir>/test/setup-env.ts'],
    },
  },
  gitignore: ['/assets/', '/cdk.out/', '/bench/.out/', '.jsii.tabl.json'],
});

// Lambda sources are plain TypeScript (not jsii): type-checked by the test tsconfig and linted.
project.tsconfigDev.addInclude('../lambda/**/*.ts');
project.tsconfigDev.addInclude('../examples/**/*.ts');
project.tsconfigDev.addInclude('../bench/**/*.ts');
project.eslint?.addLintPattern('lambda');
project.eslint?.addLintPattern('examples');
project.eslint?.addLintPattern('bench');
// Handler dependencies are bundled at build time, so they are dev dependencies of the package.
for (const glob of ['lambda/**', 'examples/**', 'bench/**']) project.eslint?.allowDevDeps(glob);
// eslint's project service reads the nearest tsconfig.json: give these folders the test one.
for (const dir of ['lambda', 'examples', 'bench', 'build-tools']) {
  new JsonFile(project, `${dir}/tsconfig.json`, {
    obj: { extends: '../test/tsconfig.json', include: ['**/*.ts'] },
  });
}

// The bundled handlers ship inside the npm package; their sources do not.
project.addPackageIgnore('/lambda/');
project.addPackageIgnore('/examples/');
project.addPackageIgnore('/bench/');
project.addPackageIgnore('!/assets/');

const bundle = project.addTask('bundle', {
  description: 'Bundle every Lambda handler (lambda/<name>/index.ts) into assets/<name>/index.js with esbuild',
  exec: `ts-node --project test/tsconfig.json build-tools/bundle-handlers.ts --target ${NODE_TARGET}`,
  receiveArgs: true,
});
// Both `build` (through pre-compile) and `test` bundle first: a fresh clone must not fail with
// "Cannot find asset".
project.preCompileTask.spawn(bundle);
project.testTask.prependSpawn(bundle);

// Source for every jsii language, without the toolchains this machine lacks.
const codeOnly = project.addTask('package:code-only', {
  description: 'Generate Python, Java, .NET and Go sources with jsii-pacmak (no packaging)',
  exec: 'jsii-pacmak --code-only --target python --target java --target dotnet --target go',
});
const packageAll = project.tasks.tryFind('package-all');
packageAll?.reset();
packageAll?.spawn(project.tasks.tryFind('package:js')!);
packageAll?.spawn(codeOnly);

// Integration apps (test/integ/integ.*.ts): their committed snapshots are verified offline as part of
// `test`; `integ:update` rewrites them without deploying anything.
const INTEG = 'integ-runner --directory test/integ --language typescript --parallel-regions us-east-1';
const integ = project.addTask('integ', {
  description: 'Verify the committed snapshots of the integration apps against a fresh synth (offline)',
  exec: INTEG,
});
project.addTask('integ:update', {
  description: 'Rewrite the integration apps\' snapshots without deploying (review the diff before committing)',
  steps: [{ spawn: 'bundle' }, { exec: `${INTEG} --dry-run --update-on-failed` }],
});
// Opt-in, before a release, with credentials for a sandbox account: deploys every integration app,
// runs its assertions (awsApiCall), and destroys it. Offline verification never executes them.
project.addTask('integ:deploy', {
  description: 'Deploy every integration app to a real AWS account, run its assertions, destroy it (needs credentials; costs money)',
  steps: [
    { spawn: 'bundle' },
    {
      exec: 'integ-runner --directory test/integ --language typescript --parallel-regions ${AWS_REGION:-us-east-1} --force --update-on-failed',
      receiveArgs: true,
    },
  ],
});
project.testTask.spawn(integ);

// Docs that compile and an API that translates: README and @example snippets are compiled and
// translated to Python, Java, C# and Go (a broken example fails), and jsii-pacmak generates the
// four languages' sources (an API that does not translate fails).
const docsCheck = project.addTask('docs:check', {
  description: 'Compile with jsii, compile and translate every example (jsii-rosetta --strict), generate all language sources, regenerate API.md',
  // docgen last: API.md is regenerated, and .ci/run's `git diff --exit-code` fails if it was stale.
  steps: [{ spawn: 'compile' }, { exec: 'jsii-rosetta extract --strict' }, { spawn: codeOnly.name }, { spawn: 'docgen' }],
});
project.testTask.spawn(docsCheck);

project.addTask('bench', {
  description: 'Run the benchmarks (bench/run.ts); prints a table and writes bench/RESULTS.md',
  steps: [{ spawn: 'bundle' }, { exec: 'ts-node --project test/tsconfig.json bench/run.ts', receiveArgs: true }],
});

project.addTask('synth:example', {
  description: 'Synthesize the example app (examples/app.ts) into cdk.out with the aws-cdk CLI',
  steps: [
    { spawn: 'bundle' },
    { exec: 'cdk synth --app "ts-node --prefer-ts-exts -P test/tsconfig.json examples/app.ts" --output cdk.out --quiet' },
  ],
});

// The npm package is the library, its bundled handlers and its docs: not the CI, build or doc tooling.
for (const path of ['/.ci/', '/build-tools/', '/rosetta/']) project.addPackageIgnore(path);

project.synth();
