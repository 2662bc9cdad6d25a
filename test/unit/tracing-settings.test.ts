/** SPEC §11: what the file leaves out, the OTEL_* variables and then the defaults decide. */
import { describe, expect, it } from 'vitest';
import type { TracingConfig } from '../../src/config/types.js';
import { exportSettings, tracingEnabled } from '../../src/observe/tracing.js';

const unset: TracingConfig = { enabled: true, endpoint: null, protocol: null, serviceName: null, sampleRatio: 1 };

describe('tracing settings', () => {
  it('defaults: the local collector, protobuf, breakwater', () => {
    expect(exportSettings(unset, {})).toEqual({
      endpoint: 'http://127.0.0.1:4318/v1/traces',
      protocol: 'http/protobuf',
      serviceName: 'breakwater',
      sampleRatio: 1,
    });
  });

  it('takes the OTEL_* variables for what the file leaves out', () => {
    expect(
      exportSettings(unset, {
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/',
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
        OTEL_SERVICE_NAME: 'checkout-sidecar',
      }),
    ).toEqual({
      endpoint: 'http://collector:4318/v1/traces',
      protocol: 'http/json',
      serviceName: 'checkout-sidecar',
      sampleRatio: 1,
    });
    expect(
      exportSettings(unset, {
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://b:4318/custom',
      }).endpoint,
    ).toBe('http://b:4318/custom');
  });

  it('lets the file win over the variables', () => {
    const file: TracingConfig = {
      enabled: true,
      endpoint: 'http://file:4318/v1/traces',
      protocol: 'http/protobuf',
      serviceName: 'from-file',
      sampleRatio: 0.25,
    };
    expect(
      exportSettings(file, {
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://env/v1/traces',
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
        OTEL_SERVICE_NAME: 'env',
      }),
    ).toEqual({
      endpoint: 'http://file:4318/v1/traces',
      protocol: 'http/protobuf',
      serviceName: 'from-file',
      sampleRatio: 0.25,
    });
  });

  it('is off when the file says so, or OTEL_SDK_DISABLED=true', () => {
    expect(tracingEnabled(unset, {})).toBe(true);
    expect(tracingEnabled({ ...unset, enabled: false }, {})).toBe(false);
    expect(tracingEnabled(unset, { OTEL_SDK_DISABLED: 'true' })).toBe(false);
    expect(tracingEnabled(unset, { OTEL_SDK_DISABLED: 'TRUE ' })).toBe(false);
    expect(tracingEnabled(unset, { OTEL_SDK_DISABLED: 'false' })).toBe(true);
  });
});
