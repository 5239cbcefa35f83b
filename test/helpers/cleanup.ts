import {afterAll} from 'vitest';
import {removeTempDirs} from './temp.js';

// Every test file removes the temporary folders it made, keys and state folders among them.
afterAll(removeTempDirs);
