/*
 * The benchmark is not part of the test run (it takes minutes and prints figures, not verdicts);
 * this runs the smallest case of each of its parts so that it cannot silently rot. It asserts what
 * the parts must compute, never timings.
 */
import { SCALE_CASES } from '../bench/cases';
import { measureAnswers } from '../bench/ebs-answer';
import { coldStartPart, iamPart, scalePart, waitingPart } from '../bench/parts';
import { main } from '../bench/run';
import { firstN } from '../bench/scale';

jest.setTimeout(60_000);

describe('bench smoke: smallest case of each part', () => {
  test('template scale: every case synthesizes at N = 1 and 2, and the figures add up', () => {
    const { rows, marginal, section } = scalePart({ ns: [1, 2], runs: () => 1 });
    expect(rows).toHaveLength(SCALE_CASES.length * 2);
    const row = (name: string, family: string, n: number) => rows.find((r) => r.case.name === name && r.case.family === family && r.n === n)!;
    // The L1 is one resource per instance and nothing else.
    expect(row('AWS::FSx::Snapshot', 'FSx for OpenZFS snapshot', 2).resources).toBe(2);
    // AwsCustomResource adds a custom resource and an inline policy per instance.
    const acr = marginal.find((m) => m.case.name === 'AwsCustomResource' && m.case.family === 'FSx for OpenZFS snapshot')!;
    expect(acr.lastAdds).toBe(2);
    expect(row('AwsCustomResource', 'FSx for OpenZFS snapshot', 2).policies).toBe(2);
    // The targets for the custom-resource constructs: the N-th instance adds one resource.
    for (const name of ['OpenZfsSnapshot', 'EbsSnapshotOnDeploy']) {
      expect(marginal.find((m) => m.case.name === name)?.lastAdds).toBe(1);
    }
    for (const r of rows) {
      expect(r.templateBytes).toBeGreaterThan(0);
      expect(r.synthMs).toBeGreaterThan(0);
    }
    expect(section.markdown).toMatch(/\| OpenZfsSnapshot +\| +1 \| +\d+ \|/);
  });

  test('IAM growth: the search finds the first N at which a figure crosses a bound', () => {
    const acr = SCALE_CASES.find((c) => c.name === 'AwsCustomResource')!;
    expect(firstN(acr, (f) => f.policies >= 3, 8)).toBe(3);
    expect(firstN(acr, (f) => f.policies >= 9, 8)).toBeUndefined();
    const { rows } = iamPart(2, [acr]);
    expect(rows).toEqual([{ case: acr, cdkSplitsAt: undefined, iamRefusesAt: undefined }]);
  });

  test('cold start: the OpenZFS bundle and AwsCustomResource load in a fresh process', () => {
    const { rows } = coldStartPart({ runs: 1, only: ['openzfs-snapshot'], sourceMapModes: [true], acrClients: ['fsx'] });
    expect(rows.map((r) => r.case.name)).toEqual(['openzfs-snapshot', 'AwsCustomResource (@aws-sdk/client-fsx)']);
    expect(rows[0].case.clients).toEqual(expect.arrayContaining(['fsx', 'cloudformation']));
    for (const r of rows) {
      expect(r.loadMs).toBeGreaterThan(0);
      expect(r.clientsMs).toBeGreaterThan(0);
    }
  });

  test('waiting cost: polls and latency follow the interval in the simulator', async () => {
    const { rows } = await waitingPart({ lifecyclesMs: [10_000], intervalsMs: [10_000, 30_000], phases: 1 });
    // isComplete right after onEvent, then every interval until the snapshot is AVAILABLE at 10 s.
    expect(rows[0]).toMatchObject({ pollsMean: 2, latencyMeanMs: 0 });
    expect(rows[1]).toMatchObject({ pollsMean: 2, latencyMeanMs: 20_000 });
    expect(rows[0].describeCallsMean).toBeGreaterThanOrEqual(rows[0].pollsMean);
  });

  test('EBS answers: a fault-free Create or Update of EbsSnapshotOnDeploy waits for nothing; a stack deletion neither', async () => {
    const rows = await measureAnswers();
    const row = (pattern: RegExp) => rows.filter((r) => pattern.test(r.what));
    expect(row(/^EbsSnapshotOnDeploy (Create|Update)/)).toHaveLength(5);
    expect(row(/stack deletion/)).toHaveLength(4);
    for (const r of row(/^EbsSnapshotOnDeploy (Create|Update)/)) expect(r.seconds).toBeLessThanOrEqual(5);
    for (const r of row(/stack deletion \(|replaced snapshot/)) expect(r.seconds).toBe(0);
    // A snapshot made moments ago is deleted once reads show it (20–30 s here), in 5 s steps.
    for (const r of row(/right after its Create/)) expect(r.seconds).toBeLessThanOrEqual(35);
  });

  test('run.ts puts the parts together', async () => {
    const markdown = await main(['--quick', '--no-write', '--only=waiting,ebs-direct']);
    expect(markdown).toMatch(/^# Benchmark results/);
    expect(markdown).toMatch(/## Waiting cost/);
    expect(markdown).toMatch(/## EBS direct upload/);
    expect(markdown).toMatch(/\| measure +\| value/);
    await expect(main(['--only=nonsense'])).rejects.toThrow(/unknown part/);
  });
});
