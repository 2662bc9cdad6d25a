// Tests import the sources, where the build's standalone validator
// (dist/config/validate-file.cjs) does not exist: compile it from the schema, when a test first checks one.
import { useValidator } from '../../src/config/validate.js';
import { compileValidator } from '../../src/config/validate-compile.js';

useValidator(compileValidator);
