import { xmlElementText } from './scan.js';
import { codeOf, isObject, text, type Dialect } from './types.js';

/** AWS JSON protocols (`application/x-amz-json-1.0`/`1.1`): `__type` without its namespace, `message` or `Message`. */
export const awsJson: Dialect = {
  name: 'aws-json',
  extract(body, contentType) {
    if (body.kind !== 'json' || !isObject(body.value)) return undefined;
    const value = body.value;
    if (!contentType.includes('x-amz-json') && typeof value.__type !== 'string') return undefined;
    const type = codeOf(value.__type);
    return { message: text(value.message) ?? text(value.Message), code: type?.split('#').pop()?.split(':')[0] };
  },
};

function tag(xml: string, name: string): string | undefined {
  const content = xmlElementText(xml, name);
  return content === undefined ? undefined : decodeXml(content.trim()) || undefined;
}

function decodeXml(value: string): string {
  return value
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&quot;', '"')
    .replaceAll('&apos;', "'")
    .replaceAll('&amp;', '&');
}

/** AWS XML protocols (S3, SQS, EC2...): `<Error><Code>` and `<Message>`. */
export const awsXml: Dialect = {
  name: 'aws-xml',
  extract(body) {
    // A literal and one character: linear (SPEC §20.5).
    if (body.kind !== 'xml' || !/<Error[\s>]/.test(body.text)) return undefined;
    return { message: tag(body.text, 'Message'), code: tag(body.text, 'Code') };
  },
};
