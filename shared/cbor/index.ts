export { encode, Tagged, MAX_NESTING, type CborKey, type CborValue } from './encode.js';
export { decode } from './decode.js';
